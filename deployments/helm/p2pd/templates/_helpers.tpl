{{/* Names, labels and the pieces every component shares. */}}

{{- define "p2pd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* RELEASE-p2pd, or the release name alone when it contains the chart's name. */}}
{{- define "p2pd.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := include "p2pd.name" . }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The object name of a component: (dict "root" $ "c" "edge"). */}}
{{- define "p2pd.component" -}}
{{- printf "%s-%s" (include "p2pd.fullname" .root) .c }}
{{- end }}

{{- define "p2pd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "p2pd.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .c }}
{{- end }}

{{- define "p2pd.labels" -}}
{{ include "p2pd.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end }}

{{/* The fully qualified DNS name of a component's Service. */}}
{{- define "p2pd.fqdn" -}}
{{- printf "%s.%s.svc.%s" (include "p2pd.component" .) .root.Release.Namespace .root.Values.clusterDomain }}
{{- end }}

{{- define "p2pd.image" -}}
{{- printf "%s%s:%s" .root.Values.image.repositoryPrefix .c (.root.Values.image.tag | default .root.Chart.AppVersion) }}
{{- end }}

{{/* What every p2pd node dials: all trackers behind the headless Service. */}}
{{- define "p2pd.trackerAddr" -}}
{{- printf "dns:///%s:7000" (include "p2pd.fqdn" (dict "root" .root "c" "tracker")) }}
{{- end }}

{{- define "p2pd.adminTokenSecret" -}}
{{- .Values.adminToken.existingSecret | default (printf "%s-admin-token" (include "p2pd.fullname" .)) }}
{{- end }}

{{- define "p2pd.joinTokenSecret" -}}
{{- .Values.joinToken.existingSecret | default (printf "%s-join-token" (include "p2pd.fullname" .)) }}
{{- end }}

{{- define "p2pd.originTokenSecret" -}}
{{- .Values.originToken.existingSecret | default (printf "%s-origin-token" (include "p2pd.fullname" .)) }}
{{- end }}

{{/* The origin credential, for the trackers and the origin. */}}
{{- define "p2pd.originTokenEnv" -}}
- name: P2PD_ORIGIN_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "p2pd.originTokenSecret" . }}
      key: token
{{- end }}

{{- define "p2pd.tlsSecret" -}}
{{- .Values.tls.existingSecret | default (printf "%s-tls" (include "p2pd.fullname" .)) }}
{{- end }}

{{/*
A token Secret's data: the value given, else the one already in the
cluster (kept on upgrade), else a new random one.
*/}}
{{- define "p2pd.token" -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .name }}
{{- if .value }}
{{- .value | b64enc }}
{{- else if and $existing $existing.data (index $existing.data "token") }}
{{- index $existing.data "token" }}
{{- else }}
{{- randAlphaNum 40 | b64enc }}
{{- end }}
{{- end }}

{{/* Pod-level settings of every component. */}}
{{- define "p2pd.podSpec" -}}
automountServiceAccountToken: false
enableServiceLinks: false
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with .root.Values.image.pullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- with .v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Pod annotations: the values' own plus a checksum of the chart's secrets, so a changed token restarts the pods that read it. */}}
{{- define "p2pd.podAnnotations" -}}
checksum/secrets: {{ include (print .root.Template.BasePath "/secrets.yaml") .root | sha256sum }}
{{- with .root.Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Anti-affinity over nodes: soft (preferred) or hard (required). */}}
{{- define "p2pd.antiAffinity" -}}
{{- if eq .mode "hard" }}
podAntiAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    - topologyKey: kubernetes.io/hostname
      labelSelector:
        matchLabels:
          {{- include "p2pd.selectorLabels" . | nindent 10 }}
{{- else if eq .mode "soft" }}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "p2pd.selectorLabels" . | nindent 12 }}
{{- else }}
{{- fail (printf "antiAffinity of %s: %q, want soft or hard" .c .mode) }}
{{- end }}
{{- end }}

{{/* Container-level settings of every p2pd container. */}}
{{- define "p2pd.container" -}}
image: {{ include "p2pd.image" . }}
imagePullPolicy: {{ .root.Values.image.pullPolicy }}
securityContext:
  {{- toYaml .root.Values.containerSecurityContext | nindent 2 }}
resources:
  {{- toYaml .v.resources | nindent 2 }}
{{- end }}

{{/*
Environment of every p2pd service: logging, the join token, mutual TLS and
tracing. Flags read P2PD_* variables (P2PD_TLS_CERT is --tls-cert).
*/}}
{{- define "p2pd.env" -}}
- name: P2PD_LOG_LEVEL
  value: {{ .root.Values.logLevel | quote }}
- name: P2PD_LOG_JSON
  value: {{ .root.Values.logJSON | quote }}
{{- if .root.Values.joinToken.enabled }}
- name: P2PD_JOIN_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "p2pd.joinTokenSecret" .root }}
      key: token
{{- end }}
{{- if .root.Values.tls.enabled }}
- name: P2PD_TLS_CERT
  value: /etc/p2pd/tls/tls.crt
- name: P2PD_TLS_KEY
  value: /etc/p2pd/tls/tls.key
- name: P2PD_TLS_CA
  value: /etc/p2pd/tls/ca.crt
{{- end }}
{{- if .root.Values.tracing.endpoint }}
- name: OTEL_TRACES_EXPORTER
  value: otlp
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .root.Values.tracing.endpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: grpc
- name: OTEL_SERVICE_NAME
  value: {{ .c }}
{{- else }}
- name: OTEL_TRACES_EXPORTER
  value: none
{{- end }}
{{- end }}

{{/* The TLS volume mount and volume, when mutual TLS is on. */}}
{{- define "p2pd.tlsMount" -}}
{{- if .Values.tls.enabled }}
- name: tls
  mountPath: /etc/p2pd/tls
  readOnly: true
{{- end }}
{{- end }}

{{- define "p2pd.tlsVolume" -}}
{{- if .Values.tls.enabled }}
- name: tls
  secret:
    secretName: {{ include "p2pd.tlsSecret" . }}
{{- end }}
{{- end }}

{{/*
Probes on the ops listener (port "ops"): /healthz answers while the
process runs, /readyz once the service serves (the tracker has loaded its
index, a node has registered).
*/}}
{{- define "p2pd.probes" -}}
startupProbe:
  httpGet: {path: /healthz, port: ops}
  periodSeconds: 2
  failureThreshold: 60
livenessProbe:
  httpGet: {path: /healthz, port: ops}
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
readinessProbe:
  httpGet: {path: /readyz, port: ops}
  periodSeconds: 3
  timeoutSeconds: 3
  failureThreshold: 2
{{- end }}
