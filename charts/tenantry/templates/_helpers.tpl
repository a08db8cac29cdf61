{{/* The install namespace. */}}
{{- define "tenantry.namespace" -}}
{{- required "namespace.name is required" .Values.namespace.name -}}
{{- end -}}

{{/* The controller's identity as the API server sees it (the admission policy exempts it). */}}
{{- define "tenantry.serviceAccountUser" -}}
system:serviceaccount:{{ include "tenantry.namespace" . }}:tenantry
{{- end -}}
