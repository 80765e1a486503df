{{- define "agentctl.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "agentctl.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "agentctl.labels" -}}
app.kubernetes.io/name: {{ include "agentctl.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "agentctl.selectorLabels" -}}
app.kubernetes.io/name: {{ include "agentctl.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "agentctl.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "agentctl.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "agentctl.servingNamespace" -}}
{{- default .Release.Namespace .Values.servingNamespace -}}
{{- end -}}

{{/* The directory the controller reads manifests from, and the root their sources lie under. */}}
{{- define "agentctl.root" -}}
{{- if eq .Values.manifests.source "gitSync" -}}/git/repo{{- else -}}/manifests{{- end -}}
{{- end -}}

{{/* The Lease the replicas elect a leader with: one per environment, so that the releases of two
environments in one namespace do not share a leader. */}}
{{- define "agentctl.leaseName" -}}
{{- .Values.leaderElection.leaseName }}{{ with .Values.controller.environment }}-{{ . }}{{ end }}
{{- end }}
