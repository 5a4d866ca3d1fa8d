{{/*
The gateway and worker Deployments: one shape, restricted security context, config checksum,
probes, preStop and a computed grace period. Call with a dict: ctx (root), component, module
(python -m), values (.Values.gateway or .Values.worker), portName, port, autoscaled, maxSurge,
gracePeriod.
*/}}
{{- define "kafka-rpc-gateway.deployment" -}}
{{- $ctx := .ctx }}
{{- $g := .values }}
{{- $portName := .portName }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "kafka-rpc-gateway.componentName" (dict "ctx" $ctx "component" .component) }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "kafka-rpc-gateway.labels" (dict "ctx" $ctx "component" .component) | nindent 4 }}
spec:
  {{- if not .autoscaled }}
  replicas: {{ $g.replicaCount }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "kafka-rpc-gateway.selectorLabels" (dict "ctx" $ctx "component" .component) | nindent 6 }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: {{ .maxSurge }}
      maxUnavailable: 0
  template:
    metadata:
      annotations:
        {{- include "kafka-rpc-gateway.podAnnotations" (dict "ctx" $ctx "values" $g "port" .port) | nindent 8 }}
      labels:
        {{- include "kafka-rpc-gateway.labels" (dict "ctx" $ctx "component" .component) | nindent 8 }}
        {{- with $g.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      {{- with $ctx.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      serviceAccountName: {{ include "kafka-rpc-gateway.serviceAccountName" $ctx }}
      automountServiceAccountToken: false
      enableServiceLinks: false
      securityContext:
        {{- toYaml $ctx.Values.podSecurityContext | nindent 8 }}
      terminationGracePeriodSeconds: {{ .gracePeriod }}
      {{- with $g.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      {{- with include "kafka-rpc-gateway.initContainers" $ctx }}
      initContainers:
        {{- . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ .component }}
          image: {{ include "kafka-rpc-gateway.image" $ctx }}
          imagePullPolicy: {{ $ctx.Values.image.pullPolicy }}
          command: ["python", "-m", {{ .module | quote }}]
          ports:
            - name: {{ .portName }}
              containerPort: {{ .port }}
              protocol: TCP
          envFrom:
            - configMapRef:
                name: {{ include "kafka-rpc-gateway.fullname" $ctx }}-env
          {{- if or (eq .component "gateway") $g.extraEnv $ctx.Values.tracing.enabled }}
          env:
            {{- if eq .component "gateway" }}
            {{- include "kafka-rpc-gateway.resultKeyEnv" $ctx | nindent 12 }}
            {{- end }}
            {{- with include "kafka-rpc-gateway.tracingEnv" (dict "ctx" $ctx "component" .component) }}
            {{- . | nindent 12 }}
            {{- end }}
            {{- /* Last, so that a variable set here wins over the chart's (Kubernetes takes the last). */}}
            {{- with $g.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- end }}
          {{- range $probe := list (list "startupProbe" "/healthz") (list "livenessProbe" "/healthz") (list "readinessProbe" "/readyz") }}
          {{- with include "kafka-rpc-gateway.probe" (dict "name" (first $probe) "probe" (get $g (first $probe)) "path" (last $probe) "port" $portName) }}
          {{- . | nindent 10 }}
          {{- end }}
          {{- end }}
          {{- with include "kafka-rpc-gateway.preStop" (dict "ctx" $ctx "seconds" $g.preStopSleepSeconds) }}
          {{- . | nindent 10 }}
          {{- end }}
          securityContext:
            {{- toYaml $ctx.Values.securityContext | nindent 12 }}
          resources:
            {{- toYaml $g.resources | nindent 12 }}
          volumeMounts:
            {{- include "kafka-rpc-gateway.volumeMounts" $ctx | nindent 12 }}
            {{- if eq .component "gateway" }}
            {{- include "kafka-rpc-gateway.accessVolumeMounts" $ctx | nindent 12 }}
            {{- end }}
      volumes:
        {{- include "kafka-rpc-gateway.volumes" (dict "ctx" $ctx "component" .component) | nindent 8 }}
        {{- if eq .component "gateway" }}
        {{- include "kafka-rpc-gateway.accessVolumes" $ctx | nindent 8 }}
        {{- end }}
      {{- with $g.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $g.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $g.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $g.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}
