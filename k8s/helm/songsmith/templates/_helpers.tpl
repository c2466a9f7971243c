{{/* Names, labels and the pieces every component's manifests share. */}}

{{- define "songsmith.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "songsmith.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "songsmith.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "songsmith.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: songsmith
{{- end -}}

{{/* Context: dict "root" $ "name" <component>. */}}
{{- define "songsmith.selectorLabels" -}}
app.kubernetes.io/name: {{ include "songsmith.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "songsmith.componentLabels" -}}
{{ include "songsmith.labels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{/* The four stage names; the gateway is handled beside them. */}}
{{- define "songsmith.stageNames" -}}
tokenizer style diffusion vocoder
{{- end -}}

{{- define "songsmith.componentName" -}}
{{- printf "%s-%s" (include "songsmith.fullname" .root) .name -}}
{{- end -}}

{{- define "songsmith.headlessName" -}}
{{- printf "%s-%s-headless" (include "songsmith.fullname" .root) .name -}}
{{- end -}}

{{- define "songsmith.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "songsmith.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Context: dict "root" $ "image" <component image block>. */}}
{{- define "songsmith.image" -}}
{{- $tag := .image.tag | default .root.Values.global.image.tag | default .root.Chart.AppVersion -}}
{{- printf "%s/%s:%s-%s" .root.Values.global.image.registry .image.repository $tag .image.variant -}}
{{- end -}}

{{- define "songsmith.otlpEndpoint" -}}
{{- if .Values.jaeger.enabled -}}
{{- printf "http://%s-jaeger.%s.svc.%s:4317" (include "songsmith.fullname" .) .Release.Namespace .Values.global.clusterDomain -}}
{{- else -}}
{{- .Values.tracing.otlpEndpoint -}}
{{- end -}}
{{- end -}}

{{- define "songsmith.terminationGracePeriodSeconds" -}}
{{- $s := .Values.global.shutdown -}}
{{- add $s.drainDelaySeconds $s.graceSeconds $s.marginSeconds -}}
{{- end -}}

{{/* Identifies what the model job downloads; a new value means a new Job and a new ready marker. */}}
{{- define "songsmith.modelsHash" -}}
{{- $m := .Values.models -}}
{{- $image := include "songsmith.image" (dict "root" . "image" .Values.gateway.image) -}}
{{- printf "%s|%s|%s" $m.source $m.family $image | sha256sum | trunc 10 -}}
{{- end -}}

{{- define "songsmith.modelsClaimName" -}}
{{- .Values.models.persistence.existingClaim | default (printf "%s-models" (include "songsmith.fullname" .)) -}}
{{- end -}}

{{- define "songsmith.modelsReadyFile" -}}
{{- printf "%s/.songsmith/ready-%s" .Values.models.mountPath (include "songsmith.modelsHash" .) -}}
{{- end -}}

{{/* The shell command that fills the models volume once and then drops the ready marker. A lock on the
volume keeps several loaders (init containers of pods starting together, Job retries) from writing the
same files at once; a loader that finds the marker has nothing to do. */}}
{{- define "songsmith.modelsCommand" -}}
{{- $m := .Values.models -}}
{{- $cmd := "" -}}
{{- if eq $m.source "pull" -}}
{{- $cmd = printf "songsmith models pull %s --model-root %s" $m.family $m.mountPath -}}
{{- else -}}
{{- $cmd = printf "songsmith models demo --model-root %s" $m.mountPath -}}
{{- end -}}
{{- $marker := include "songsmith.modelsReadyFile" . -}}
{{- printf "set -e; mkdir -p %s/.songsmith; exec 9>%s/.songsmith/lock; flock 9; if [ ! -f %s ]; then %s; touch %s; fi" $m.mountPath $m.mountPath $marker $cmd $marker -}}
{{- end -}}

{{- define "songsmith.mtlsSecretName" -}}
{{- printf "%s-tls" (include "songsmith.componentName" .) -}}
{{- end -}}

{{- define "songsmith.authSecretName" -}}
{{- .root.Values.gateway.auth.existingSecret | default (printf "%s-gateway-auth" (include "songsmith.fullname" .root)) -}}
{{- end -}}

{{/* Resource requirements with every quantity as a string (how the API returns them; typed clients insist). */}}
{{- define "songsmith.resources" -}}
{{- range $section := list "requests" "limits" }}
{{- with (index $ $section) }}
{{ $section }}:
{{- range $resource, $quantity := . }}
  {{ $resource }}: {{ $quantity | toString | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}
