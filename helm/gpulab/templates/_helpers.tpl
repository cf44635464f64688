{{/* Names: "<release>-gpulab", or the release name when it contains "gpulab". */}}
{{- define "gpulab.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "gpulab.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "gpulab.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* "<fullname>-<component>", e.g. (include "gpulab.component" (list . "hub")) */}}
{{- define "gpulab.component" -}}
{{- printf "%s-%s" (include "gpulab.fullname" (index . 0)) (index . 1) -}}
{{- end -}}

{{/* Labels every object carries; with (list . "component"). */}}
{{- define "gpulab.labels" -}}
{{- $root := index . 0 -}}
helm.sh/chart: {{ printf "%s-%s" $root.Chart.Name $root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
app.kubernetes.io/part-of: gpulab
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
{{ include "gpulab.selectorLabels" . }}
{{- end -}}

{{/* Labels that select one component's pods; with (list . "component"). */}}
{{- define "gpulab.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "gpulab.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* User server pods: KubeSpawner's component label, and the release through the chart's
     settings (spawner.kubernetes.extra labels are not a gpulab setting, so the namespace
     and part-of label scope them). */}}
{{- define "gpulab.singleuserSelector" -}}
app.kubernetes.io/component: singleuser-server
app.kubernetes.io/part-of: gpulab
{{- end -}}

{{- define "gpulab.image" -}}
{{- printf "%s:%s" .repository (toString .tag) -}}
{{- end -}}

{{- define "gpulab.hubImage" -}}
{{- printf "%s:%s" .Values.hub.image.repository (.Values.hub.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* Ports inside the pods. The gpulab services listen at the hub's port + 1 .. + 5
     (gpulab.hub_config.services.config.SERVICE_PORT_OFFSETS). */}}
{{- define "gpulab.hubPort" -}}8081{{- end -}}
{{- define "gpulab.proxyPort" -}}8000{{- end -}}
{{- define "gpulab.proxyApiPort" -}}8001{{- end -}}
{{/* The hub's volume is mounted at dataVolume; its data folder is a sub-folder the hub
     creates and owns (it makes the folder private, which it cannot do to a volume's root). */}}
{{- define "gpulab.dataVolume" -}}/srv/gpulab{{- end -}}
{{- define "gpulab.dataDir" -}}/srv/gpulab/data{{- end -}}
{{- define "gpulab.configDir" -}}/etc/gpulab{{- end -}}

{{- define "gpulab.sshPort" -}}
{{- dig "ssh" "port" 2222 (.Values.gpulab | default dict) -}}
{{- end -}}

{{- define "gpulab.sshEnabled" -}}
{{- if dig "ssh" "enabled" true (.Values.gpulab | default dict) -}}true{{- end -}}
{{- end -}}

{{- define "gpulab.baseUrl" -}}
{{- dig "hub" "base_url" "/" (.Values.gpulab | default dict) -}}
{{- end -}}

{{/* The database: the bundled PostgreSQL or externalDatabase, as a dict. */}}
{{- define "gpulab.database" -}}
{{- if .Values.postgresql.enabled -}}
host: {{ include "gpulab.component" (list . "postgresql") }}
port: 5432
user: gpulab
gpulab: gpulab
hub: jupyterhub
{{- else -}}
{{- if not .Values.externalDatabase.host -}}
{{- fail "postgresql.enabled is false: set externalDatabase.host (and its passwordSecret)" -}}
{{- end -}}
host: {{ .Values.externalDatabase.host }}
port: {{ .Values.externalDatabase.port }}
user: {{ .Values.externalDatabase.user }}
gpulab: {{ .Values.externalDatabase.gpulabDatabase }}
hub: {{ .Values.externalDatabase.hubDatabase }}
{{- end -}}
{{- end -}}

{{/* Where the database password is: a Secret name and key. */}}
{{- define "gpulab.databasePasswordRef" -}}
{{- if .Values.postgresql.enabled -}}
name: {{ include "gpulab.secretsName" . }}
key: db-password
{{- else -}}
name: {{ required "externalDatabase.passwordSecret.name is required with an external database" .Values.externalDatabase.passwordSecret.name }}
key: {{ .Values.externalDatabase.passwordSecret.key }}
{{- end -}}
{{- end -}}

{{- define "gpulab.secretsName" -}}
{{- .Values.secrets.existingSecret | default (include "gpulab.component" (list . "secrets")) -}}
{{- end -}}

{{/* A generated secret value that survives upgrades: the one already in the cluster's
     Secret when there is one, else `value` (base64 encoded). With (dict "root" . "key" k "value" v). */}}
{{- define "gpulab.keptSecret" -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace (include "gpulab.secretsName" .root) -}}
{{- if and $existing (hasKey ($existing.data | default dict) .key) -}}
{{- index $existing.data .key -}}
{{- else -}}
{{- .value | b64enc -}}
{{- end -}}
{{- end -}}

{{/* gpulab.yaml for the hub: the `gpulab` values, Kubernetes defaults under them, and on top
     what the chart's shape decides (those keys are not allowed in the values). */}}
{{- define "gpulab.settings" -}}
{{- $db := include "gpulab.database" . | fromYaml -}}
{{- $hub := include "gpulab.component" (list . "hub") -}}
{{- $public := include "gpulab.component" (list . "proxy-public") -}}
{{- $dbBase := printf "postgresql://%s@%s:%v" $db.user $db.host $db.port -}}
{{- $defaults := dict
      "spawner" (dict
        "environment" (dict "GPULAB_URL" (printf "http://%s:%v%s" $public .Values.proxy.service.port (include "gpulab.baseUrl" .)))
        "kubernetes" (dict "home_storage" (dict "capacity" "10Gi"))) -}}
{{- if .Values.projectsVolume.create -}}
{{- $_ := set $defaults "projects" (dict "kubernetes" (dict "claim_name" (include "gpulab.component" (list . "projects")))) -}}
{{- end -}}
{{- $owned := dict
      "hub" (dict
        "ip" "0.0.0.0"
        "port" (include "gpulab.proxyPort" . | int)
        "internal_port" (include "gpulab.hubPort" . | int)
        "data_dir" (include "gpulab.dataDir" .)
        "db_url" (printf "%s/%s" $dbBase $db.hub)
        "service_host" $hub
        "metrics_public" .Values.metrics.prometheus.enabled)
      "proxy" (dict
        "kind" "configurable-http-proxy"
        "api_url" (printf "http://%s:%s" (include "gpulab.component" (list . "proxy-api")) (include "gpulab.proxyApiPort" .)))
      "database" (dict "url" (printf "%s/%s" $dbBase $db.gpulab))
      "spawner" (dict
        "backend" "kubernetes"
        "kubernetes" (dict
          "namespace" .Release.Namespace
          "hub_url" (printf "http://%s:%s" $hub (include "gpulab.hubPort" .))))
      "ssh" (dict
        "bind_address" "0.0.0.0"
        "servers_url" (printf "http://%s:%v" $public .Values.proxy.service.port)) -}}
{{- $settings := mustMergeOverwrite $defaults (deepCopy (.Values.gpulab | default dict)) $owned -}}
{{- toYaml $settings -}}
{{- end -}}
