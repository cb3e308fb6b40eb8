{{/* Names ---------------------------------------------------------------------------------- */}}

{{- define "wework.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "wework.fullname" -}}
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

{{- define "wework.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* (list $ componentName) -> "<fullname>-<component>", at most 63 characters. */}}
{{- define "wework.componentName" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%s" (include "wework.fullname" $root | trunc 40 | trimSuffix "-") (index . 1) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The namespace of every object: the release's, unless namespaceOverride names another. */}}
{{- define "wework.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "wework.configMapName" -}}
{{- printf "%s-config" (include "wework.fullname" .) }}
{{- end }}

{{- define "wework.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "wework.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Labels --------------------------------------------------------------------------------- */}}

{{- define "wework.selectorLabels" -}}
app.kubernetes.io/name: {{ include "wework.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "wework.labels" -}}
helm.sh/chart: {{ include "wework.chart" . }}
{{ include "wework.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: wework
{{- end }}

{{/* (list $ componentName) */}}
{{- define "wework.componentSelectorLabels" -}}
{{ include "wework.selectorLabels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "wework.componentLabels" -}}
{{ include "wework.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* Image ---------------------------------------------------------------------------------- */}}

{{- define "wework.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The Deployments to render, as YAML: component name -> the `server` defaults deep-merged with the
component's own values (maps merge key by key, lists and scalars replace; a `false` in the
component wins, tests/chart checks it), plus
  kind: server | worker
  serviceArg: the --services value (servers)
  healthService: the grpc.health.v1 name the readiness probe asks for (servers)
  callbackIngress: whether this component serves the provider's HTTP ingress
*/}}
{{- define "wework.components" -}}
{{- $root := . -}}
{{- $out := dict -}}
{{- $titles := dict "tenant" "Tenant" "account" "Account" "message" "Message" "callback" "Callback" "report" "Report" "media" "Media" -}}
{{- if .Values.allInOne.enabled -}}
{{- $c := mergeOverwrite (deepCopy .Values.server) (deepCopy (omit .Values.allInOne "enabled")) -}}
{{- $_ := set $c "kind" "server" -}}
{{- $_ := set $c "serviceArg" "all" -}}
{{- $_ := set $c "healthService" "" -}}
{{- $_ := set $c "callbackIngress" .Values.callbackIngress.enabled -}}
{{- $_ := set $out "server" $c -}}
{{- else -}}
{{- range $name := list "tenant" "account" "message" "callback" "report" "media" -}}
{{- $svc := index $root.Values.services $name -}}
{{- if $svc.enabled -}}
{{- $c := mergeOverwrite (deepCopy $root.Values.server) (deepCopy (omit $svc "enabled")) -}}
{{- $_ := set $c "kind" "server" -}}
{{- $_ := set $c "serviceArg" $name -}}
{{- $_ := set $c "healthService" (printf "wework.v1.%sService" (get $titles $name)) -}}
{{- $_ := set $c "callbackIngress" (and (eq $name "callback") $root.Values.callbackIngress.enabled) -}}
{{- $_ := set $out $name $c -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $name, $w := .Values.workers -}}
{{- if $w.enabled -}}
{{- $c := mergeOverwrite (deepCopy $root.Values.server) (deepCopy (omit $w "enabled")) -}}
{{- $_ := set $c "kind" "worker" -}}
{{- $_ := set $c "callbackIngress" false -}}
{{- $_ := set $out (printf "worker-%s" $name) $c -}}
{{- end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end }}

{{/* Pods ----------------------------------------------------------------------------------- */}}

{{/* The settings file (config.yaml of the ConfigMap). */}}
{{- define "wework.configYaml" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- if .Values.metrics.enabled -}}
{{- $obs := deepCopy (get $cfg "observability" | default dict) -}}
{{- $_ := set $obs "metrics_port" (int .Values.metrics.port) -}}
{{- $_ := set $cfg "observability" $obs -}}
{{- end -}}
{{- $media := deepCopy (get $cfg "media" | default dict) -}}
{{- $_ := set $media "backend" .Values.media.backend -}}
{{- if eq .Values.media.backend "s3" -}}
{{- $s3 := deepCopy (get $media "s3" | default dict) -}}
{{- $v := .Values.media.s3 -}}
{{- $_ := set $s3 "bucket" $v.bucket -}}
{{- $_ := set $s3 "region" $v.region -}}
{{- $_ := set $s3 "addressing_style" $v.addressingStyle -}}
{{- if $v.serverSideEncryption }}{{ $_ := set $s3 "server_side_encryption" $v.serverSideEncryption }}{{ end -}}
{{- if $v.sseKmsKeyId }}{{ $_ := set $s3 "sse_kms_key_id" $v.sseKmsKeyId }}{{ end -}}
{{- $_ := set $media "s3" $s3 -}}
{{- if $v.keyPrefix }}{{ $_ := set $media "key_prefix" $v.keyPrefix }}{{ end -}}
{{- end -}}
{{- $_ := set $cfg "media" $media -}}
{{- toYaml $cfg -}}
{{- end }}

{{/* (list $ extraEnv) -> the container's env list: settings file, secret references, extras. */}}
{{- define "wework.env" -}}
{{- $root := index . 0 -}}
- name: WEWORK_CONFIG_FILE
  value: /etc/wework/config.yaml
{{- range $var, $ref := $root.Values.secrets.env }}
{{- if $ref }}
- name: {{ $var }}
  valueFrom:
    secretKeyRef:
      name: {{ $ref.secret | default $root.Values.secrets.existingSecret }}
      key: {{ $ref.key }}
      {{- if $ref.optional }}
      optional: true
      {{- end }}
{{- end }}
{{- end }}
{{- if eq $root.Values.media.backend "s3" }}
{{- $s3 := $root.Values.media.s3 }}
{{- range $var, $key := dict "WEWORK_MEDIA__S3__ENDPOINT_URL" $s3.endpointKey "WEWORK_MEDIA__S3__ACCESS_KEY_ID" $s3.accessKeyIdKey "WEWORK_MEDIA__S3__SECRET_ACCESS_KEY" $s3.secretAccessKeyKey }}
- name: {{ $var }}
  valueFrom:
    secretKeyRef:
      name: {{ $s3.secret | default $root.Values.secrets.existingSecret }}
      key: {{ $key }}
      optional: true
{{- end }}
{{- end }}
{{- with (index . 1) }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* (list $ extraVolumeMounts) */}}
{{- define "wework.volumeMounts" -}}
- name: config
  mountPath: /etc/wework
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- with (index . 1) }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* (list $ configMapName extraVolumes) */}}
{{- define "wework.volumes" -}}
{{- $root := index . 0 -}}
- name: config
  configMap:
    name: {{ index . 1 }}
- name: tmp
  emptyDir:
    sizeLimit: {{ $root.Values.tmpSizeLimit }}
{{- with (index . 2) }}
{{ toYaml . }}
{{- end }}
{{- end }}

