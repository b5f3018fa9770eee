{{/* The release's name prefix. */}}
{{- define "bud.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "bud.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: (dict "ctx" $ "component" "gateway"). */}}
{{- define "bud.selector" -}}
app.kubernetes.io/name: {{ .ctx.Chart.Name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "bud.secretName" -}}
{{- default (printf "%s-secrets" (include "bud.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "bud.servicesImage" -}}
{{ printf "%s:%s" .Values.image.services.repository .Values.image.services.tag }}
{{- end -}}

{{/* The gRPC address other services dial a component at: (dict "ctx" $ "name" "app" "port" 50061). */}}
{{- define "bud.dial" -}}
{{ printf "%s-%s:%v" (include "bud.fullname" .ctx) .name .port }}
{{- end -}}

{{/* The first engine group's pod 0: the engine the app registers itself. */}}
{{- define "bud.defaultEngine" -}}
{{- $e := first .Values.engines -}}
{{- $sts := printf "%s-engine-%s" (include "bud.fullname" .) $e.name -}}
{{ printf "%s-0.%s:%v" $sts $sts $e.port }}
{{- end -}}

{{/* The TLS Secret of a service identity. */}}
{{- define "bud.tlsSecret" -}}
{{- if .ctx.Values.tls.certManager.enabled -}}
{{ printf "%s-tls-%s" (include "bud.fullname" .ctx) .identity }}
{{- else -}}
{{ required (printf "tls.existingSecrets.%s is required without cert-manager" .identity) (index .ctx.Values.tls.existingSecrets .identity) }}
{{- end -}}
{{- end -}}

{{/* What every Bud container's environment holds: the shared settings file, TLS files of its
     identity, the shared secrets, and where the app, the default engine and the prompt
     executor are dialled. A container sets its own bind address after this (env order: the
     later entry of a name wins). (dict "ctx" $ "identity" "gateway" "bind" (dict NAME ADDRESS)):
     `bind` gives the addresses this container listens on instead of dialling them. */}}
{{- define "bud.env" -}}
- name: BUD_CONFIG
  value: /etc/bud/config/bud.yaml
- name: BUD_DATA_DIR
  value: /var/lib/bud
- name: BUD_TLS_CA_FILE
  value: /etc/bud/tls/ca.crt
- name: BUD_TLS_CERT_FILE
  value: /etc/bud/tls/tls.crt
- name: BUD_TLS_KEY_FILE
  value: /etc/bud/tls/tls.key
- name: BUD_TLS_SERVER_NAME
  value: {{ .ctx.Values.tls.serverName | quote }}
- name: BUD_KEY_HASH_SECRET
  valueFrom: {secretKeyRef: {name: {{ include "bud.secretName" .ctx }}, key: key-hash-secret}}
- name: BUD_JWT_SECRET
  valueFrom: {secretKeyRef: {name: {{ include "bud.secretName" .ctx }}, key: jwt-secret}}
{{- $bind := .bind | default dict }}
{{- $dial := dict "BUD_APP_ADDRESS" (include "bud.dial" (dict "ctx" .ctx "name" "app" "port" .ctx.Values.app.port)) "BUD_ENGINE_ADDRESS" (include "bud.defaultEngine" .ctx) "BUD_PROMPT_ADDRESS" (include "bud.dial" (dict "ctx" .ctx "name" "prompt" "port" .ctx.Values.prompt.port)) }}
{{- range $name := list "BUD_APP_ADDRESS" "BUD_ENGINE_ADDRESS" "BUD_PROMPT_ADDRESS" }}
- name: {{ $name }}
  value: {{ (get $bind $name) | default (get $dial $name) | quote }}
{{- end }}
{{- if .ctx.Values.metrics.enabled }}
- name: BUD_{{ upper .identity }}_METRICS_ADDRESS
  value: {{ printf "0.0.0.0:%v" (index .ctx.Values.metrics.ports .identity) | quote }}
- name: BUD_METRICS_TOKEN
  valueFrom: {secretKeyRef: {name: {{ include "bud.secretName" .ctx }}, key: metrics-token}}
{{- end }}
{{- end -}}

{{- define "bud.volumes" -}}
- name: config
  configMap: {name: {{ include "bud.fullname" .ctx }}-config}
- name: tls
  secret: {secretName: {{ include "bud.tlsSecret" . }}, defaultMode: 0440}
- name: data
  emptyDir: {}
- name: tmp
  emptyDir: {}
{{- end -}}

{{- define "bud.volumeMounts" -}}
- {name: config, mountPath: /etc/bud/config, readOnly: true}
- {name: tls, mountPath: /etc/bud/tls, readOnly: true}
- {name: data, mountPath: /var/lib/bud}
- {name: tmp, mountPath: /tmp}
{{- end -}}

{{- define "bud.podSpecCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets: {{ toYaml . | nindent 2 }}
{{- end }}
securityContext: {{ toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}

{{/* NetworkPolicy peers: the pods of one component; DNS. */}}
{{- define "bud.from" -}}
- podSelector:
    matchLabels:
      app.kubernetes.io/name: {{ .ctx.Chart.Name }}
      app.kubernetes.io/instance: {{ .ctx.Release.Name }}
      app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- define "bud.dns" -}}
- ports: [{port: 53, protocol: UDP}, {port: 53, protocol: TCP}]
{{- end }}
