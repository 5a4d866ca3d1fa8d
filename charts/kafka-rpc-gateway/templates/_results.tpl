{{/*
The key that signs result locations (`/results/<token>`) of `Prefer: respond-async` requests:
GATEWAY_RESULT_KEY from a Secret (never the ConfigMap), the same for every gateway replica.
Either gateway.results.keySecret names an existing Secret, or the chart keeps its own
<fullname>-result-key with a random key, carried over from the live Secret on every upgrade.
*/}}
{{- define "kafka-rpc-gateway.resultKeySecretName" -}}
{{- .Values.gateway.results.keySecret | default (printf "%s-result-key" (include "kafka-rpc-gateway.fullname" .)) }}
{{- end }}

{{/* Key of the result key in that Secret: keySecretKey in the operator's Secret, `key` in the chart's. */}}
{{- define "kafka-rpc-gateway.resultKeySecretKey" -}}
{{- ternary .Values.gateway.results.keySecretKey "key" (not (empty .Values.gateway.results.keySecret)) }}
{{- end }}

{{/*
The chart's own key as the live Secret holds it (base64), or "" when there is none: on install, and
whenever there is no cluster to ask (helm template, helm lint, client-side dry runs).
*/}}
{{- define "kafka-rpc-gateway.liveResultKey" -}}
{{- $secret := lookup "v1" "Secret" .Release.Namespace (include "kafka-rpc-gateway.resultKeySecretName" .) }}
{{- dig "data" "key" "" $secret }}
{{- end }}

{{/* The gateway container's GATEWAY_RESULT_KEY (an EnvVar list item). */}}
{{- define "kafka-rpc-gateway.resultKeyEnv" -}}
- name: GATEWAY_RESULT_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "kafka-rpc-gateway.resultKeySecretName" . }}
      key: {{ include "kafka-rpc-gateway.resultKeySecretKey" . }}
{{- end }}

{{- define "kafka-rpc-gateway.validateResults" -}}
{{- if hasKey .Values.gateway.settings "resultKey" }}
{{- fail "gateway.settings.resultKey would land in the ConfigMap: put the key in a Secret and name it in gateway.results.keySecret (or leave that empty and the chart generates one)" }}
{{- end }}
{{- range .Values.gateway.extraEnv }}
{{- if eq .name "GATEWAY_RESULT_KEY" }}
{{- fail "gateway.extraEnv sets GATEWAY_RESULT_KEY, which the chart sets from gateway.results.keySecret (or its own Secret): use that value instead" }}
{{- end }}
{{- end }}
{{- end }}
