/* @gpulab/lab-ready: JupyterLab's launcher and file browser as soon as the layout is restored.
 *
 * Stock JupyterLab shows both only once its router has handled the page's URL: the default file
 * browser stays hidden (class jp-mod-restoring) and the launcher unopened until then. The router
 * waits in `apputils:load-statedb` for the state database's workspace save, a 500 ms Debouncer
 * that each change of state during the start restarts (the file browser's columns, the recent
 * documents, which save through a 500 ms Debouncer of their own). That is about a second of
 * idle page after everything is loaded and drawn (spawner/singleuser/lab_ready.py has the
 * numbers). When `app.restored` resolves, this plugin does what JupyterLab's restoreBrowser does
 * after the route: restore the default file browser's folder, list it, and show it; and opens
 * the launcher if the main area is empty. JupyterLab's own code then finds the browser restored
 * (restore() returns at once), lists it again, and opens no second launcher. URLs that open a
 * document or folder (/lab/tree/...) or reset or clone the workspace are left to JupyterLab.
 *
 * Written by hand, not built: a webpack module-federation container (`get` and `init`, what
 * JupyterLab calls) that shares no module: the plugin needs only the application object. The
 * file's name carries the sha256 of its content (served as immutable, static_cache.py);
 * tests/unit/spawner/singleuser/test_lab_ready.py checks both. */
(function () {
  "use strict";
  var NAME = "@gpulab/lab-ready";
  var RESTORING = "jp-mod-restoring";

  function pageOption(name) {
    var node = document.getElementById("jupyter-config-data");
    try {
      return JSON.parse(node.textContent)[name];
    } catch (error) {
      return undefined;
    }
  }

  function defaultBrowser(shell) {
    var areas = ["left", "right"];
    for (var i = 0; i < areas.length; i++) {
      for (var widget of shell.widgets(areas[i])) {
        if (widget.id === "filebrowser") {
          return widget;
        }
      }
    }
    return null;
  }

  function showBrowser(shell) {
    var browser = typeof shell.widgets === "function" ? defaultBrowser(shell) : null;
    if (!browser || !browser.model || typeof browser.model.restore !== "function" || !browser.hasClass(RESTORING)) {
      return Promise.resolve();
    }
    return browser.model.restore(browser.id)
      .then(function () {
        return browser.model.refresh();
      })
      .then(function () {
        browser.removeClass(RESTORING);
      });
  }

  function openLauncher(app) {
    if (app.shell.isEmpty("main") && app.commands.hasCommand("launcher:create")) {
      return app.commands.execute("launcher:create");
    }
  }

  var plugin = {
    id: NAME + ":launcher",
    description: "Shows the file browser and, in an empty main area, the launcher as soon as the layout is restored.",
    autoStart: true,
    activate: function (app) {
      var shell = app.shell;
      if (app.name !== "JupyterLab" || !shell || typeof shell.isEmpty !== "function") {
        return;
      }
      if (pageOption("treePath") || /[?&](reset|clone)(=|&|$)/.test(window.location.search)) {
        return;
      }
      app.restored
        .then(function () {
          openLauncher(app);
          return showBrowser(shell);
        })
        .catch(function (reason) {
          console.warn(NAME + ": JupyterLab shows them after its route", reason);
        });
    }
  };

  var container = {
    get: function (module) {
      if (module !== "./extension") {
        return Promise.reject(new Error(NAME + " has no module " + module));
      }
      return Promise.resolve(function () {
        return { __esModule: true, default: [plugin] };
      });
    },
    init: function () {}
  };

  window._JUPYTERLAB = window._JUPYTERLAB || {};
  window._JUPYTERLAB[NAME] = container;
})();
