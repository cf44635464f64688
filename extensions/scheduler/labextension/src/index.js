// "Run as a gpulab job…": `gpulab run SCRIPT.py -- ARGS` from JupyterLab.
//
// A context-menu item on .py files in the file browser and a Launcher card open one dialog
// (script, profile, arguments). The user's server does the work (lab_jobs.py: it checks the
// path, snapshots the script's folder and submits the CLI's request to the central scheduler);
// this file only asks and shows: the run id with links, or the server's message as it is.

import { Dialog, MainAreaWidget, Notification, showDialog, showErrorMessage } from '@jupyterlab/apputils';
import { URLExt } from '@jupyterlab/coreutils';
import { IFileBrowserFactory } from '@jupyterlab/filebrowser';
import { ILauncher } from '@jupyterlab/launcher';
import { ServerConnection } from '@jupyterlab/services';
import { runIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

const COMMAND = 'gpulab:run-job';

// A request to the user's server; the server's own message when it refuses.
async function request(path, init = {}) {
  const settings = ServerConnection.makeSettings();
  const response = await ServerConnection.makeRequest(URLExt.join(settings.baseUrl, path), init, settings);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(body.message || `${response.status} ${response.statusText}`);
  }
  return body;
}

function field(form, label, input) {
  const row = document.createElement('label');
  row.className = 'jp-gpulab-JobForm-field';
  row.append(label, input);
  form.append(row);
  return input;
}

// The dialog's body: its values are read when the user presses Submit.
class JobForm extends Widget {
  constructor(path, profiles) {
    super();
    this.addClass('jp-gpulab-JobForm');
    const form = this.node;
    this.script = field(form, 'Script (.py, relative to your home)', document.createElement('input'));
    this.script.name = 'script';
    this.script.value = path || '';
    this.script.placeholder = 'train.py';
    this.profile = field(form, 'Profile', document.createElement('select'));
    this.profile.name = 'profile';
    for (const profile of profiles) {
      const option = new Option(`${profile.display_name} (${profile.id})`, profile.id, profile.default, profile.default);
      this.profile.append(option);
    }
    this.arguments = field(form, 'Arguments (split as a shell splits them)', document.createElement('input'));
    this.arguments.name = 'arguments';
    this.arguments.placeholder = '--lr 0.01 --epochs 3';
  }

  getValue() {
    return { path: this.script.value.trim(), profile: this.profile.value || null, arguments: this.arguments.value };
  }
}

// A run's output in a panel of its own, followed until the run has ended.
function openLog(app, run) {
  const body = document.createElement('div');
  body.className = 'jp-gpulab-JobLog-body';
  const header = document.createElement('div');
  header.className = 'jp-gpulab-JobLog-header';
  const runs = document.createElement('a');
  runs.href = run.links.runs;
  runs.target = '_blank';
  runs.rel = 'noopener';
  runs.textContent = 'the scheduler\'s runs page';
  header.append(`Run ${run.id} on ${run.profile}; all runs are on `, runs, '.');
  const text = document.createElement('pre');
  text.className = 'jp-gpulab-JobLog-text';
  body.append(header, text);
  const content = new Widget({ node: body });
  const panel = new MainAreaWidget({ content });
  panel.id = `gpulab-job-log-${run.id}`;
  panel.title.label = `Log: ${run.name}`;
  panel.title.caption = `run ${run.id}`;
  panel.title.icon = runIcon;
  panel.title.closable = true;
  panel.addClass('jp-gpulab-JobLog');
  app.shell.add(panel, 'main');
  let offset = 0;
  const follow = async () => {
    while (!panel.isDisposed) {
      let chunk;
      try {
        chunk = await request(`gpulab/jobs/${run.id}/log?offset=${offset}`);
      } catch (error) {
        text.append(`\n[${error.message}]\n`);
        return;
      }
      text.append(chunk.text);
      offset = chunk.next_offset;
      if (chunk.ended) {
        panel.title.label = `Log: ${run.name} (ended)`;
        return;
      }
      if (!chunk.text) await new Promise(resolve => setTimeout(resolve, 1000));
    }
  };
  follow();
}

// The .py file the user means: the one selected in the file browser, else the last one
// worked on in the main area (the Launcher's card is the current widget when it is clicked).
function chosenScript(browsers, lastOpened) {
  const browser = browsers.tracker.currentWidget;
  const selected = browser ? Array.from(browser.selectedItems()) : [];
  const script = selected.find(item => item.type === 'file' && item.path.endsWith('.py'));
  return script ? script.path : lastOpened;
}

function scriptOf(widget) {
  const path = widget && widget.context && widget.context.path;
  return path && path.endsWith('.py') ? path : '';
}

async function runJob(app, path) {
  let profiles;
  try {
    profiles = (await request('gpulab/jobs/profiles')).profiles;
  } catch (error) {
    await showErrorMessage('No profiles to run a job on', error);
    return;
  }
  const result = await showDialog({
    title: 'Run as a gpulab job',
    body: new JobForm(path, profiles),
    buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Submit' })],
    focusNodeSelector: path ? 'input[name=arguments]' : 'input[name=script]'
  });
  if (!result.button.accept) return;
  let run;
  try {
    run = await request('gpulab/jobs', { method: 'POST', body: JSON.stringify(result.value) });
  } catch (error) {
    // A dialog, not a toast: toasts cut messages at 140 characters, and the reason is the point
    await showErrorMessage('The job was not submitted', error);
    return;
  }
  const waiting = run.message ? ` (${run.message})` : '';
  Notification.success(`Job ${run.name} submitted on ${run.profile}: run ${run.id}, ${run.status.toLowerCase()}${waiting}`, {
    autoClose: false,
    actions: [
      { label: 'Show log', caption: 'Follow the run\'s output here', callback: () => openLog(app, run) },
      { label: 'Runs page', caption: run.links.runs, callback: () => window.open(run.links.runs, '_blank') }
    ]
  });
}

const plugin = {
  id: '@gpulab/jobs:plugin',
  description: 'Run a .py file as a gpulab job (the central scheduler), as `gpulab run SCRIPT -- ARGS` does.',
  autoStart: true,
  requires: [IFileBrowserFactory],
  optional: [ILauncher],
  activate: (app, browsers, launcher) => {
    let lastOpened = '';
    app.shell.currentChanged?.connect((_, change) => {
      lastOpened = scriptOf(change.newValue) || lastOpened;
    });
    app.commands.addCommand(COMMAND, {
      label: args => (args.launcher ? 'Run a script as a job' : 'Run as a gpulab job…'),
      caption: 'Submit a Python script to the gpulab scheduler, as `gpulab run SCRIPT -- ARGS` does',
      icon: args => (args.launcher ? runIcon : undefined),
      execute: () => runJob(app, chosenScript(browsers, lastOpened))
    });
    app.contextMenu.addItem({
      command: COMMAND,
      selector: '.jp-DirListing-item[data-file-type="python"]',
      rank: 3
    });
    if (launcher) {
      launcher.add({ command: COMMAND, args: { launcher: true }, category: 'gpulab', rank: 1 });
    }
  }
};

export default plugin;
