{{/* Chart name, overridable. */}}
{{- define "kafka-rpc-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: 63 characters (DNS label), no "release-release". */}}
{{- define "kafka-rpc-gateway.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name of a component's resources: <fullname>-gateway / <fullname>-worker (53 + 10 chars). */}}
{{- define "kafka-rpc-gateway.componentName" -}}
{{- printf "%s-%s" (include "kafka-rpc-gateway.fullname" .ctx | trunc 53 | trimSuffix "-") .component }}
{{- end }}

{{- define "kafka-rpc-gateway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every resource. Call with (dict "ctx" $ "component" "gateway"); component may be empty. */}}
{{- define "kafka-rpc-gateway.labels" -}}
helm.sh/chart: {{ include "kafka-rpc-gateway.chart" .ctx }}
{{ include "kafka-rpc-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: {{ include "kafka-rpc-gateway.name" .ctx }}
{{- end }}

{{/*
Selector labels: name, instance and component only. Deployment selectors are immutable, so user
labels (podLabels) never enter them.
*/}}
{{- define "kafka-rpc-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kafka-rpc-gateway.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end }}

{{- define "kafka-rpc-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kafka-rpc-gateway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kafka-rpc-gateway.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
Whether the cluster serves an API group/version: listed in .Values.apiVersions (for renderers
without cluster access) or in .Capabilities (helm install, or helm template --api-versions).
Call with (dict "ctx" $ "api" "monitoring.coreos.com/v1"); returns "true" or "".
*/}}
{{- define "kafka-rpc-gateway.hasAPI" -}}
{{- if or (has .api .ctx.Values.apiVersions) (.ctx.Capabilities.APIVersions.Has .api) -}}
true
{{- end -}}
{{- end }}

{{/*
Whether KEDA scales the workers: worker.keda.enabled and the cluster serves keda.sh/v1alpha1.
Without the API the ScaledObject is skipped (as the monitoring objects are) and the workers keep
worker.replicaCount, rather than the install failing on an unknown kind; NOTES.txt says so.
*/}}
{{- define "kafka-rpc-gateway.kedaScales" -}}
{{- if and .Values.worker.keda.enabled (include "kafka-rpc-gateway.hasAPI" (dict "ctx" . "api" "keda.sh/v1alpha1")) -}}
true
{{- end -}}
{{- end }}

{{/*
Settings map -> env: camelCase keys become <PREFIX>_SNAKE_CASE, lists and maps JSON, scalars strings.
Call with (dict "prefix" "GATEWAY" "settings" .Values.gateway.settings); renders YAML map lines.
*/}}
{{- define "kafka-rpc-gateway.settingsEnv" -}}
{{- range $key, $value := .settings }}
{{- if not (kindIs "invalid" $value) }}
{{ printf "%s_%s" $.prefix (snakecase $key | upper) }}: {{ ternary (toJson $value) (toString $value) (or (kindIs "slice" $value) (kindIs "map" $value)) | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* Seconds: ceiling of a number given as int or float. */}}
{{- define "kafka-rpc-gateway.ceil" -}}
{{- ceil (float64 .) | int }}
{{- end }}

{{/*
Gateway terminationGracePeriodSeconds: preStop sleep, then uvicorn's drain of in-flight requests
(shutdownGrace, default maxTimeout + 5, as GatewaySettings.graceful_shutdown_seconds), then the
producer flush, plus a margin. An explicit value below that fails the render.
*/}}
{{- define "kafka-rpc-gateway.gateway.gracePeriod" -}}
{{- $g := .Values.gateway }}
{{- $s := $g.settings }}
{{- $maxTimeout := float64 (default 30 $s.maxTimeout) }}
{{- $drain := addf $maxTimeout 5 }}
{{- if not (kindIs "invalid" $s.shutdownGrace) }}
{{- $drain = float64 $s.shutdownGrace }}
{{- end }}
{{- $flush := float64 (ternary $s.flushTimeout 5 (hasKey $s "flushTimeout")) }}
{{- $min := addf $g.preStopSleepSeconds $drain $flush $g.terminationMarginSeconds | include "kafka-rpc-gateway.ceil" | int }}
{{- if kindIs "invalid" $g.terminationGracePeriodSeconds }}
{{- $min }}
{{- else if lt (int $g.terminationGracePeriodSeconds) $min }}
{{- fail (printf "gateway.terminationGracePeriodSeconds=%v is too short: preStop %vs + drain %vs + flush %vs + margin %vs needs at least %d" $g.terminationGracePeriodSeconds $g.preStopSleepSeconds $drain $flush $g.terminationMarginSeconds $min) }}
{{- else }}
{{- int $g.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/* Worker terminationGracePeriodSeconds: preStop sleep + drainTimeout + margin (commit and flush). */}}
{{- define "kafka-rpc-gateway.worker.gracePeriod" -}}
{{- $w := .Values.worker }}
{{- $drain := float64 (ternary $w.settings.drainTimeout 20 (hasKey $w.settings "drainTimeout")) }}
{{- $min := addf $w.preStopSleepSeconds $drain $w.terminationMarginSeconds | include "kafka-rpc-gateway.ceil" | int }}
{{- if kindIs "invalid" $w.terminationGracePeriodSeconds }}
{{- $min }}
{{- else if lt (int $w.terminationGracePeriodSeconds) $min }}
{{- fail (printf "worker.terminationGracePeriodSeconds=%v is too short: preStop %vs + drainTimeout %vs + margin %vs needs at least %d" $w.terminationGracePeriodSeconds $w.preStopSleepSeconds $drain $w.terminationMarginSeconds $min) }}
{{- else }}
{{- int $w.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/*
preStop sleep: the native sleep action on Kubernetes >= 1.30 (KEP-3960, on by default), else
exec sleep (the image is Debian-based and has /bin/sleep). Call with (dict "ctx" $ "seconds" N).
*/}}
{{- define "kafka-rpc-gateway.preStop" -}}
{{- if gt (int .seconds) 0 -}}
lifecycle:
  preStop:
    {{- if semverCompare ">=1.30-0" .ctx.Capabilities.KubeVersion.Version }}
    sleep:
      seconds: {{ int .seconds }}
    {{- else }}
    exec:
      command: ["sleep", {{ int .seconds | toString | quote }}]
    {{- end }}
{{- end }}
{{- end }}

{{/* Probes from values: `enabled` dropped, httpGet filled in. (dict "probe" .Values.x.livenessProbe "path" "/healthz" "port" "http") */}}
{{- define "kafka-rpc-gateway.probe" -}}
{{- if .probe.enabled -}}
{{ .name }}:
  httpGet:
    path: {{ .path }}
    port: {{ .port }}
  {{- omit .probe "enabled" | toYaml | nindent 2 }}
{{- end }}
{{- end }}

{{/* Fail early on values that cannot work together. */}}
{{- define "kafka-rpc-gateway.validate" -}}
{{- if not .Values.kafka.bootstrapServers }}
{{- fail "kafka.bootstrapServers is required, e.g. --set kafka.bootstrapServers=kafka-bootstrap.kafka:9092" }}
{{- end }}
{{- include "kafka-rpc-gateway.validateAccess" . }}
{{- include "kafka-rpc-gateway.validateResults" . }}
{{- include "kafka-rpc-gateway.validateTracing" . }}
{{- if and .Values.worker.autoscaling.enabled .Values.worker.keda.enabled }}
{{- fail "worker.autoscaling.enabled and worker.keda.enabled both target the worker Deployment: KEDA creates its own HPA and refuses a workload already scaled by another; enable only one" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled .Values.metrics.podMonitor.enabled }}
{{- fail "metrics.serviceMonitor.enabled and metrics.podMonitor.enabled would scrape every pod twice; enable only one" }}
{{- end }}
{{- range $key, $_ := .Values.kafka.extraProperties }}
{{- if regexMatch "(?i)(password|secret|jaas|\\.pem$|^ssl\\.key$)" $key }}
{{- fail (printf "kafka.extraProperties.%s looks like a secret and would land in a ConfigMap: put credentials in a Secret (kafka.sasl.existingSecret, kafka.tls.existingSecret)" $key) }}
{{- end }}
{{- end }}
{{- range $key := list "port" "host" "requestTopic" "replyTopic" }}
{{- if hasKey $.Values.gateway.settings $key }}
{{- fail (printf "gateway.settings.%s is managed by the chart: use gateway.containerPort and topics.* instead" $key) }}
{{- end }}
{{- end }}
{{- range $key := list "handlers" "groupId" "metricsHost" "metricsPort" "requestTopic" "replyTopics" "deadLetterTopic" }}
{{- if hasKey $.Values.worker.settings $key }}
{{- fail (printf "worker.settings.%s is managed by the chart: use worker.handlers, worker.groupId, worker.metricsPort and topics.* instead" $key) }}
{{- end }}
{{- end }}
{{- if and .Values.kafka.tls.certKey (not .Values.kafka.tls.keyKey) }}
{{- fail "kafka.tls.certKey is set but kafka.tls.keyKey is empty: mutual TLS needs both the client certificate and its key" }}
{{- end }}
{{- end }}

{{/* Pod-level pieces shared by gateway and worker: (dict "ctx" $ "component" "gateway" "values" .Values.gateway) */}}
{{- define "kafka-rpc-gateway.podAnnotations" -}}
checksum/config: {{ include (print .ctx.Template.BasePath "/configmap.yaml") .ctx | sha256sum }}
{{- if .ctx.Values.metrics.podAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | toString | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- with .values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}
