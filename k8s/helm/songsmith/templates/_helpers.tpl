{{/* Names, labels, the deployment plan and the pieces every component's manifests share. */}}

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

{{/* Context: dict "root" $ "name" <component> and, for a stage, "stage" <stage>. */}}
{{- define "songsmith.componentLabels" -}}
{{ include "songsmith.labels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- with .stage }}
songsmith.io/stage: {{ . }}
{{- end }}
{{- end -}}

{{- define "songsmith.componentName" -}}
{{- printf "%s-%s" (include "songsmith.fullname" .root) .name -}}
{{- end -}}

{{- define "songsmith.headlessName" -}}
{{- printf "%s-%s-headless" (include "songsmith.fullname" .root) .name -}}
{{- end -}}

{{/* The gRPC target of a stage Deployment (its headless Service, resolved by the gateway, round robin).
Context: dict "root" $ "name" <component> "port" <port>. */}}
{{- define "songsmith.target" -}}
{{- printf "dns:///%s.%s.svc.%s:%d" (include "songsmith.headlessName" .) .root.Release.Namespace .root.Values.global.clusterDomain (int64 .port) -}}
{{- end -}}

{{- define "songsmith.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "songsmith.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Context: dict "root" $ "image" <image block> "variant" <cpu|cuda>. */}}
{{- define "songsmith.image" -}}
{{- $tag := .image.tag | default .root.Values.global.image.tag | default .root.Chart.AppVersion -}}
{{- printf "%s/%s:%s-%s" .root.Values.global.image.registry .image.repository $tag .variant -}}
{{- end -}}

{{- define "songsmith.gatewayImage" -}}
{{- include "songsmith.image" (dict "root" . "image" .Values.gateway.image "variant" .Values.gateway.image.variant) -}}
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

{{/* `override` deep-merged onto `base`, as YAML: maps merge key by key, anything else (false and 0
included) replaces, and null removes the key, as Helm does with user values. */}}
{{- define "songsmith.merge" -}}
{{- $out := deepCopy .base -}}
{{- range $key, $value := .override -}}
{{- if eq (kindOf $value) "invalid" -}}
{{- $_ := unset $out $key -}}
{{- else if and (kindIs "map" $value) (kindIs "map" (index $out $key)) -}}
{{- $_ := set $out $key (include "songsmith.merge" (dict "base" (index $out $key) "override" $value) | fromYaml) -}}
{{- else -}}
{{- $_ := set $out $key $value -}}
{{- end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/* The song stages, in the order the plan lists them. */}}
{{- define "songsmith.songStages" -}}
tokenizer style diffusion vocoder
{{- end -}}

{{/*
The deployment plan, as YAML: `instances`, one per Deployment of a stage, and `routes`, each served
model's stages in order (model name -> stage -> instance name). An instance is a stage with one
model folder: the same (stage, folder) in two models is one instance, named after the stage the
first time a stage appears and after the stage and its first model afterwards
(`diffusion-musicgen-small`). Its settings are `stages.<stage>` with the first model's overrides;
a later model sharing it may only name the folder. The chart stage, when enabled, comes last.
*/}}
{{- define "songsmith.plan" -}}
{{- $root := . -}}
{{- $instances := list -}}
{{- $byKey := dict -}}
{{- $named := dict -}}
{{- $models := dict -}}
{{- $routes := list -}}
{{- range $model := $root.Values.models.served -}}
{{- if hasKey $models $model.name -}}
{{- fail (printf "models.served: the model %q is listed twice" $model.name) -}}
{{- end -}}
{{- $_ := set $models $model.name true -}}
{{- $generationDir := $model.stages.diffusion.modelDir -}}
{{- $route := list -}}
{{- range $stage := splitList " " (include "songsmith.songStages" $root) -}}
{{- if hasKey $model.stages $stage -}}
{{- $entry := index $model.stages $stage | default dict -}}
{{- $dir := $entry.modelDir | default "" -}}
{{- $key := printf "%s:%s" $stage $dir -}}
{{- $instance := index $byKey $key -}}
{{- if $instance -}}
{{- $extra := keys (omit $entry "modelDir") | sortAlpha -}}
{{- if $extra -}}
{{- fail (printf "models.served: %s shares the %s stage of %s (folder %q), whose entry sets its settings; remove %s from %s's entry" $model.name $stage $instance.owner $dir (join ", " $extra) $model.name) -}}
{{- end -}}
{{- $_ := set $instance "models" (append $instance.models $model.name) -}}
{{- else -}}
{{- $name := ternary (printf "%s-%s" $stage $model.name) $stage (hasKey $named $stage) -}}
{{- $_ := set $named $stage true -}}
{{- $overrides := omit $entry "modelDir" "modelName" "family" -}}
{{- $settings := include "songsmith.merge" (dict "base" (index $root.Values.stages $stage) "override" $overrides) | fromYaml -}}
{{- $family := $entry.family | default (ternary $model.family "" (eq $stage "diffusion")) -}}
{{- $instance = dict "name" $name "stage" $stage "modelDir" $dir "owner" $model.name "models" (list $model.name) "source" ($model.source | default "") "family" $family "entryModelName" ($entry.modelName | default "") "ownerGenerationDir" $generationDir "settings" $settings -}}
{{- $_ := set $byKey $key $instance -}}
{{- $instances = append $instances $instance -}}
{{- end -}}
{{- $route = append $route (dict "stage" $stage "instance" $instance.name) -}}
{{- end -}}
{{- end -}}
{{- $routes = append $routes (dict "model" $model.name "stages" $route) -}}
{{- end -}}
{{- range $instance := $instances -}}
{{- $own := and (eq (len $instance.models) 1) (eq $instance.modelDir $instance.ownerGenerationDir) -}}
{{- $_ := set $instance "modelName" ($instance.entryModelName | default (ternary $instance.owner "" $own)) -}}
{{- end -}}
{{- $chart := $root.Values.stages.chart -}}
{{- if $chart.enabled -}}
{{- $settings := omit $chart "enabled" "model" -}}
{{- $instances = append $instances (dict "name" "chart" "stage" "chart" "modelDir" "" "models" (list) "source" "" "family" "" "modelName" "" "settings" $settings) -}}
{{- end -}}
{{- toYaml (dict "instances" $instances "routes" $routes) -}}
{{- end -}}

{{/* Whether the gateway can run more than one pod (replicas, or an autoscaler allowed to add some). */}}
{{- define "songsmith.gatewayReplicated" -}}
{{- $g := .Values.gateway -}}
{{- $autoscaled := and (ne .Values.autoscaling.mode "none") $g.autoscaling.enabled (gt (int $g.autoscaling.maxReplicas) 1) -}}
{{- if or (gt (int $g.replicaCount) 1) $autoscaled -}}true{{- end -}}
{{- end -}}

{{/* The SONGSMITH_MODELS routing of the gateway, in the order of models.served (the first is the
default), each stage at its Deployment's headless Service. Context: dict "root" $ "plan" <plan>. */}}
{{- define "songsmith.routesYaml" -}}
{{- $root := .root -}}
{{- $ports := dict -}}
{{- range $instance := .plan.instances -}}
{{- $_ := set $ports $instance.name $instance.settings.port -}}
{{- end -}}
{{- range $route := .plan.routes }}
{{ $route.model }}:
{{- range $stage := $route.stages }}
  {{ $stage.stage }}: {{ include "songsmith.target" (dict "root" $root "name" $stage.instance "port" (index $ports $stage.instance)) }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Model delivery. Context: dict "root" $ "instance" <plan instance>. */}}

{{/* Whether the instance's pods mount a models volume (a stage with a folder, delivery not image). */}}
{{- define "songsmith.modelsMounted" -}}
{{- if and .instance.modelDir (ne .root.Values.models.delivery "image") -}}true{{- end -}}
{{- end -}}

{{/* The sources whose folders a loader writes: the instance's model's (per pod or per stage), or
every served model's (the shared volume's Job). */}}
{{- define "songsmith.loaderSources" -}}
{{- if .instance -}}
{{- .instance.source -}}
{{- else -}}
{{- $sources := list -}}
{{- range $model := .root.Values.models.served -}}
{{- if $model.source -}}
{{- $sources = append $sources $model.source -}}
{{- end -}}
{{- end -}}
{{- $sources | uniq | join "|" -}}
{{- end -}}
{{- end -}}

{{/* Names what a loader writes (its sources and image): a change means a new marker, a new Job. */}}
{{- define "songsmith.loaderHash" -}}
{{- printf "%s|%s" (include "songsmith.loaderSources" .) .image | sha256sum | trunc 10 -}}
{{- end -}}

{{- define "songsmith.readyFile" -}}
{{- printf "%s/.songsmith/ready-%s" .root.Values.models.mountPath (include "songsmith.loaderHash" .) -}}
{{- end -}}

{{/* The shell script that fills a models volume once and then drops the ready marker. A lock on the
volume keeps several loaders (pods starting together on one volume, Job retries) from writing the
same files at once; a loader that finds the marker has nothing to do. Context: dict "root" $
"instance" <plan instance, or absent for every model> "image" <the loader's image>. */}}
{{- define "songsmith.loaderScript" -}}
{{- $root := .root -}}
{{- $mount := $root.Values.models.mountPath -}}
{{- $commands := list -}}
{{- range $source := splitList "|" (include "songsmith.loaderSources" .) -}}
{{- $commands = append $commands (printf "songsmith models %s --model-root %s" $source $mount) -}}
{{- end -}}
{{- $marker := include "songsmith.readyFile" . -}}
{{- printf "set -e; mkdir -p %s/.songsmith; exec 9>%s/.songsmith/lock; flock 9; if [ ! -f %s ]; then %s; touch %s; fi" $mount $mount $marker (join "; " $commands) $marker -}}
{{- end -}}

{{- define "songsmith.sharedClaimName" -}}
{{- .Values.models.sharedVolume.existingClaim | default (printf "%s-models" (include "songsmith.fullname" .)) -}}
{{- end -}}

{{- define "songsmith.sharedJobName" -}}
{{- printf "%s-models-%s" (include "songsmith.fullname" .) (include "songsmith.loaderHash" (dict "root" . "image" (include "songsmith.gatewayImage" .))) -}}
{{- end -}}

{{/* Environment of a container that downloads models (an init container or the Job). */}}
{{- define "songsmith.loaderEnv" -}}
- name: HF_HUB_OFFLINE
  value: "0"
{{- range $key, $value := .Values.models.loader.env }}
- name: {{ $key }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- with .Values.models.loader.huggingFaceTokenSecret }}
- name: HF_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: HF_TOKEN
{{- end }}
{{- end -}}

{{/* Whether the cluster serves an API, as `.Capabilities.APIVersions` knows it (helm template:
--api-versions). Context: dict "root" $ "api" "<group>/<version>/<Kind>". */}}
{{- define "songsmith.served" -}}
{{- if .root.Capabilities.APIVersions.Has .api -}}true{{- end -}}
{{- end -}}
