{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "pgqueue-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Resource name prefix: release + chart, unless the release name already holds the chart name. */}}
{{- define "pgqueue-operator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "pgqueue-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "pgqueue-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pgqueue-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "pgqueue-operator.labels" -}}
helm.sh/chart: {{ include "pgqueue-operator.chart" . }}
{{ include "pgqueue-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: pgqueue
{{- end -}}

{{- define "pgqueue-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "pgqueue-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "pgqueue-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
Rules on namespaced resources: what the operator reads, and the children it owns. Used by the
ClusterRole (all namespaces) or by one Role per watched namespace.
*/}}
{{- define "pgqueue-operator.namespacedRules" -}}
- apiGroups: [pgqueue.dev]
  resources: [pgqueueworkers]
  verbs: [get, list, watch, patch, update]
- apiGroups: [pgqueue.dev]
  resources: [pgqueueworkers/status]
  verbs: [get, patch, update]
- apiGroups: [pgqueue.dev]
  resources: [pgqueueworkers/scale]
  verbs: [get, patch, update]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [batch]
  resources: [cronjobs]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [monitoring.coreos.com]
  resources: [servicemonitors]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch]
{{- /* The worker pods' pod-deletion-cost annotation (scale-in takes idle pods first): list them
  by label and patch that annotation; no get, watch, create, update or delete. */}}
- apiGroups: [""]
  resources: [pods]
  verbs: [list, patch]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end -}}

{{/*
Secrets: `get` by name only, never list or watch (the operator reads each PgQueueWorker's
database Secret on every reconcile; nothing else). `rbac.secrets.names` narrows it to those
Secrets (resourceNames).
*/}}
{{- define "pgqueue-operator.secretRules" -}}
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
  {{- with .Values.rbac.secrets.names }}
  resourceNames:
    {{- toYaml (. | uniq) | nindent 4 }}
  {{- end }}
{{- end -}}

{{/* Cluster-scoped reads: the CRD always; namespaces only when watching all of them. */}}
{{- define "pgqueue-operator.clusterRules" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [get, list, watch]
{{- if not .Values.watchNamespaces }}
- apiGroups: [""]
  resources: [namespaces]
  verbs: [get, list, watch]
{{- end }}
{{- end -}}
