{{/* Kafka connection: librdkafka properties, Secret volumes and the SASL init container. */}}

{{/* Where the Kafka credentials and certificates are mounted; paths only, never secrets. */}}
{{- define "kafka-rpc-gateway.kafkaDir" -}}/etc/kafka-rpc-gateway{{- end }}
{{- define "kafka-rpc-gateway.propertiesFile" -}}
{{- include "kafka-rpc-gateway.kafkaDir" . }}/client/client.properties
{{- end }}

{{/* librdkafka properties for KAFKA_PROPERTIES: derived from sasl/tls, then extraProperties win. */}}
{{- define "kafka-rpc-gateway.kafkaProperties" -}}
{{- $kafka := .Values.kafka }}
{{- $dir := include "kafka-rpc-gateway.kafkaDir" . }}
{{- $props := dict }}
{{- if and $kafka.sasl.enabled $kafka.tls.enabled }}
{{- $_ := set $props "security.protocol" "SASL_SSL" }}
{{- else if $kafka.sasl.enabled }}
{{- $_ := set $props "security.protocol" "SASL_PLAINTEXT" }}
{{- else if $kafka.tls.enabled }}
{{- $_ := set $props "security.protocol" "SSL" }}
{{- end }}
{{- if $kafka.sasl.enabled }}
{{- $_ := set $props "sasl.mechanisms" $kafka.sasl.mechanism }}
{{- end }}
{{- if $kafka.tls.enabled }}
{{- /* librdkafka's default since 2.0, spelled out: the broker's certificate must name the host dialled. */}}
{{- $_ := set $props "ssl.endpoint.identification.algorithm" "https" }}
{{- end }}
{{- if and $kafka.tls.enabled $kafka.tls.existingSecret }}
{{- if $kafka.tls.caKey }}
{{- $_ := set $props "ssl.ca.location" (printf "%s/tls/ca.crt" $dir) }}
{{- end }}
{{- if $kafka.tls.certKey }}
{{- $_ := set $props "ssl.certificate.location" (printf "%s/tls/tls.crt" $dir) }}
{{- $_ := set $props "ssl.key.location" (printf "%s/tls/tls.key" $dir) }}
{{- end }}
{{- end }}
{{- toJson (merge (deepCopy $kafka.extraProperties) $props) }}
{{- end }}

{{/*
The SASL Secret of one component (dict: ctx, component): its own kafka.sasl.<component>Secret,
else the shared kafka.sasl.existingSecret. Own Secrets mean own Kafka principals, so the
gateway's ACLs can keep it from writing replies (whoever writes them can answer any caller).
*/}}
{{- define "kafka-rpc-gateway.saslSecret" -}}
{{- $sasl := .ctx.Values.kafka.sasl }}
{{- get $sasl (printf "%sSecret" .component) | default $sasl.existingSecret }}
{{- end }}

{{/* Volumes every pod has (dict: ctx, component): /tmp, plus the Kafka secrets when configured. */}}
{{- define "kafka-rpc-gateway.volumes" -}}
{{- $ctx := .ctx }}
{{- $kafka := $ctx.Values.kafka }}
- name: tmp
  emptyDir:
    sizeLimit: {{ $ctx.Values.tmpSizeLimit }}
{{- if $kafka.sasl.enabled }}
- name: kafka-client
  emptyDir:
    medium: Memory
    sizeLimit: 1Mi
- name: kafka-sasl
  secret:
    secretName: {{ include "kafka-rpc-gateway.saslSecret" . }}
    defaultMode: 0440
    items:
      - key: {{ $kafka.sasl.usernameKey }}
        path: username
      - key: {{ $kafka.sasl.passwordKey }}
        path: password
{{- end }}
{{- if and $kafka.tls.enabled $kafka.tls.existingSecret }}
- name: kafka-tls
  secret:
    secretName: {{ $kafka.tls.existingSecret }}
    defaultMode: 0440
    items:
      {{- if $kafka.tls.caKey }}
      - key: {{ $kafka.tls.caKey }}
        path: ca.crt
      {{- end }}
      {{- if $kafka.tls.certKey }}
      - key: {{ $kafka.tls.certKey }}
        path: tls.crt
      - key: {{ $kafka.tls.keyKey }}
        path: tls.key
      {{- end }}
{{- end }}
{{- end }}

{{/* Mounts of the app container. */}}
{{- define "kafka-rpc-gateway.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.kafka.sasl.enabled }}
- name: kafka-client
  mountPath: {{ include "kafka-rpc-gateway.kafkaDir" . }}/client
  readOnly: true
{{- end }}
{{- if and .Values.kafka.tls.enabled .Values.kafka.tls.existingSecret }}
- name: kafka-tls
  mountPath: {{ include "kafka-rpc-gateway.kafkaDir" . }}/tls
  readOnly: true
{{- end }}
{{- end }}

{{/*
Init container that turns the SASL Secret's username and password into the librdkafka
properties file KAFKA_PROPERTIES_FILE names, on a memory-backed volume readable only by the app
user; the credentials stay out of env vars, the ConfigMap and the pod spec.
*/}}
{{- define "kafka-rpc-gateway.initContainers" -}}
{{- if .Values.kafka.sasl.enabled }}
{{- $dir := include "kafka-rpc-gateway.kafkaDir" . -}}
- name: kafka-credentials
  image: {{ include "kafka-rpc-gateway.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  command:
    - /bin/sh
    - -ec
    - |
      umask 077
      printf 'sasl.username=%s\nsasl.password=%s\n' "$(cat {{ $dir }}/sasl/username)" "$(cat {{ $dir }}/sasl/password)" > {{ include "kafka-rpc-gateway.propertiesFile" . }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  resources:
    requests:
      cpu: 10m
      memory: 16Mi
    limits:
      memory: 32Mi
  volumeMounts:
    - name: kafka-sasl
      mountPath: {{ $dir }}/sasl
      readOnly: true
    - name: kafka-client
      mountPath: {{ $dir }}/client
    - name: tmp
      mountPath: /tmp
{{- end }}
{{- end }}
