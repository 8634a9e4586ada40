{{/* The release's full name, at most 63 characters. */}}
{{- define "strom.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object of the release. */}}
{{- define "strom.labels" -}}
app.kubernetes.io/name: strom-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Labels that select the operator pod. */}}
{{- define "strom.selectorLabels" -}}
app.kubernetes.io/name: strom-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "strom.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "strom.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "strom.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "strom.brokerImage" -}}
{{- default (printf "%s:%s" .Values.image.brokerRepository (default .Chart.AppVersion .Values.image.tag)) .Values.brokerImage -}}
{{- end -}}
