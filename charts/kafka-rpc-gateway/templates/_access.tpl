{{/*
Access control of the gateway (docs/SECURITY.md): GATEWAY_AUTH* in the ConfigMap, and the API-key
and issuer-key Secrets mounted read-only into the gateway container, which re-reads them when
Kubernetes updates the files.
*/}}
{{- define "kafka-rpc-gateway.accessDir" -}}/etc/kafka-rpc-gateway/access{{- end }}

{{- define "kafka-rpc-gateway.accessEnv" -}}
{{- $auth := .Values.gateway.auth }}
{{- $dir := include "kafka-rpc-gateway.accessDir" . }}
GATEWAY_AUTH: {{ $auth.mode | quote }}
{{- with include "kafka-rpc-gateway.settingsEnv" (dict "prefix" "GATEWAY_AUTH" "settings" $auth.settings) | trim }}
{{ . }}
{{- end }}
{{- if $auth.policy }}
GATEWAY_AUTH_POLICY: {{ toJson $auth.policy | quote }}
{{- end }}
{{- if $auth.apiKeysSecret }}
GATEWAY_AUTH_API_KEYS_FILE: {{ printf "%s/api-keys/%s" $dir $auth.apiKeysKey | quote }}
{{- end }}
{{- if $auth.jwtKeySecret }}
GATEWAY_AUTH_JWT_KEY_FILE: {{ printf "%s/jwt/%s" $dir $auth.jwtKeyKey | quote }}
{{- end }}
{{- end }}

{{- define "kafka-rpc-gateway.accessVolumes" -}}
{{- $auth := .Values.gateway.auth }}
{{- if $auth.apiKeysSecret }}
- name: api-keys
  secret:
    secretName: {{ $auth.apiKeysSecret }}
    defaultMode: 0440
{{- end }}
{{- if $auth.jwtKeySecret }}
- name: jwt-key
  secret:
    secretName: {{ $auth.jwtKeySecret }}
    defaultMode: 0440
{{- end }}
{{- end }}

{{/* Whole-directory mounts (no subPath), so Secret updates reach the files without a restart. */}}
{{- define "kafka-rpc-gateway.accessVolumeMounts" -}}
{{- $auth := .Values.gateway.auth }}
{{- $dir := include "kafka-rpc-gateway.accessDir" . }}
{{- if $auth.apiKeysSecret }}
- name: api-keys
  mountPath: {{ $dir }}/api-keys
  readOnly: true
{{- end }}
{{- if $auth.jwtKeySecret }}
- name: jwt-key
  mountPath: {{ $dir }}/jwt
  readOnly: true
{{- end }}
{{- end }}

{{- define "kafka-rpc-gateway.validateAccess" -}}
{{- $auth := .Values.gateway.auth }}
{{- $modes := splitList "," $auth.mode }}
{{- if not $auth.mode }}
{{- fail "gateway.auth.mode is required: jwt, apikey, jwt,apikey, or none to let every caller call every method (docs/SECURITY.md)" }}
{{- end }}
{{- if and (has "apikey" $modes) (not $auth.apiKeysSecret) }}
{{- fail "gateway.auth.mode apikey needs gateway.auth.apiKeysSecret (a Secret with the hashed keys file)" }}
{{- end }}
{{- if has "jwt" $modes }}
{{- if eq (empty $auth.jwtKeySecret) (empty $auth.settings.jwksUrl) }}
{{- fail "gateway.auth.mode jwt needs exactly one of gateway.auth.settings.jwksUrl and gateway.auth.jwtKeySecret" }}
{{- end }}
{{- if or (not $auth.settings.issuer) (not $auth.settings.audience) }}
{{- fail "gateway.auth.mode jwt needs gateway.auth.settings.issuer and gateway.auth.settings.audience" }}
{{- end }}
{{- end }}
{{- if and (ne $auth.mode "none") (not $auth.policy) }}
{{- fail "gateway.auth.policy is empty: with authentication on every request would be refused (default deny); grant something" }}
{{- end }}
{{- end }}
