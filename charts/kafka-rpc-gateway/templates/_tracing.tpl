{{/*
OpenTelemetry env of one container (dict "ctx" $ "component" "gateway"): nothing when tracing is
off, so the processes keep their default (no tracer). In the container's env, not the shared
ConfigMap, because the service name differs per component and the pod's own name comes from the
downward API; K8S_* come first so that OTEL_RESOURCE_ATTRIBUTES can refer to them ($(VAR)).
*/}}
{{- define "kafka-rpc-gateway.tracingEnv" -}}
{{- $t := .ctx.Values.tracing }}
{{- if $t.enabled -}}
- name: K8S_NAMESPACE_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: K8S_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: OTEL_SERVICE_NAME
  value: {{ get $t.serviceNames .component | quote }}
- name: OTEL_TRACES_EXPORTER
  value: otlp
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: http/protobuf
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ $t.endpoint | quote }}
- name: OTEL_TRACES_SAMPLER
  value: {{ $t.sampler | quote }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ $t.samplerArg | toString | quote }}
{{- $attributes := list "k8s.namespace.name=$(K8S_NAMESPACE_NAME)" "k8s.pod.name=$(K8S_POD_NAME)" }}
{{- range $key := keys $t.resourceAttributes | sortAlpha }}
{{- $attributes = append $attributes (printf "%s=%v" $key (get $t.resourceAttributes $key)) }}
{{- end }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ join "," $attributes | quote }}
{{- end }}
{{- end }}

{{/* Tracing on without an endpoint would send spans to localhost:4318, where nothing listens. */}}
{{- define "kafka-rpc-gateway.validateTracing" -}}
{{- if and .Values.tracing.enabled (not .Values.tracing.endpoint) }}
{{- fail "tracing.enabled needs tracing.endpoint, the OTLP/HTTP collector URL, e.g. --set tracing.endpoint=http://jaeger-collector.tracing:4318" }}
{{- end }}
{{- end }}
