{{/*
The pod template of one component: the gateway, or one instance of the plan (a stage with its model
folder). Context: dict "root" $ "instance" <plan instance>; the gateway's instance is
{name: gateway, stage: gateway, settings: .Values.gateway}.
*/}}

{{- define "songsmith.autoscaled" -}}
{{- if and (ne .root.Values.autoscaling.mode "none") .c.autoscaling.enabled -}}true{{- end -}}
{{- end -}}

{{/* The health check command of the images (docker/healthcheck.py), with the pod's own certificate under mTLS. */}}
{{- define "songsmith.healthcheckCommand" -}}
{{- $c := .instance.settings -}}
- songsmith-healthcheck
- --port={{ $c.port | int64 }}
- --service={{ $c.healthService }}
{{- if and .root.Values.mtls.enabled (ne .instance.stage "gateway") }}
- --tls-dir=/etc/songsmith/tls
- --server-name={{ include "songsmith.headlessName" (dict "root" .root "name" .instance.name) }}
{{- end }}
{{- end -}}

{{/* Startup and readiness: the component's health service reports SERVING (model loaded and warm,
not draining). The kubelet's gRPC probe cannot present a client certificate, so under mTLS the
stages run the health check command instead. */}}
{{- define "songsmith.servingProbe" -}}
{{- $c := .instance.settings -}}
{{- if and .root.Values.mtls.enabled (ne .instance.stage "gateway") -}}
exec:
  command:
    {{- include "songsmith.healthcheckCommand" . | nindent 4 }}
{{- else -}}
grpc:
  port: {{ $c.port | int64 }}
  service: {{ $c.healthService }}
{{- end -}}
{{- end -}}

{{/* Liveness: the server answers at all. A loading or draining pod reports NOT_SERVING: not ready,
but alive, so it is not restarted. */}}
{{- define "songsmith.aliveProbe" -}}
exec:
  command:
    {{- include "songsmith.healthcheckCommand" . | nindent 4 }}
    - --alive
{{- end -}}

{{/* Resources with the GPU limit of a `gpu: true` component added (unless it names one already). */}}
{{- define "songsmith.podResources" -}}
{{- $c := .instance.settings -}}
{{- $resources := deepCopy ($c.resources | default dict) -}}
{{- if $c.gpu -}}
{{- $limits := $resources.limits | default dict -}}
{{- $gpu := .root.Values.gpu.resourceName -}}
{{- if not (hasKey $limits $gpu) -}}
{{- $_ := set $limits $gpu 1 -}}
{{- end -}}
{{- $_ := set $resources "limits" $limits -}}
{{- end -}}
{{- include "songsmith.resources" $resources -}}
{{- end -}}

{{/* The variables of one component: listening, limits, drain, logs, tracing and its own settings. */}}
{{- define "songsmith.env" -}}
{{- $root := .root -}}
{{- $instance := .instance -}}
{{- $c := $instance.settings -}}
{{- $stage := $instance.stage -}}
{{- $fullname := include "songsmith.fullname" $root -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
# torch and onnxruntime would otherwise start one thread per core of the node, not of the pod.
- name: OMP_NUM_THREADS
  valueFrom:
    resourceFieldRef:
      resource: requests.cpu
      divisor: "1"
# Idle OpenMP threads sleep instead of spinning, so pods sharing a node's cores do not starve
# each other (spinning made CPU blocks up to 10x slower on a shared machine).
- name: OMP_WAIT_POLICY
  value: "PASSIVE"
- name: SONGSMITH_HOST
  value: "0.0.0.0"
- name: SONGSMITH_PORT
  value: {{ $c.port | int64 | quote }}
- name: SONGSMITH_METRICS_PORT
  value: {{ $c.metricsPort | int64 | quote }}
- name: SONGSMITH_MAX_MESSAGE_BYTES
  value: {{ $c.grpc.maxMessageBytes | int64 | quote }}
- name: SONGSMITH_MAX_CONCURRENT
  value: {{ $c.grpc.maxConcurrent | int64 | quote }}
- name: SONGSMITH_MAX_QUEUE
  value: {{ $c.grpc.maxQueue | int64 | quote }}
- name: SONGSMITH_KEEPALIVE_TIME_S
  value: {{ $c.grpc.keepaliveTimeSeconds | quote }}
- name: SONGSMITH_KEEPALIVE_TIMEOUT_S
  value: {{ $c.grpc.keepaliveTimeoutSeconds | quote }}
- name: SONGSMITH_MAX_CONNECTION_AGE_S
  value: {{ $c.grpc.maxConnectionAgeSeconds | quote }}
- name: SONGSMITH_MAX_CONNECTION_AGE_GRACE_S
  value: {{ $c.grpc.maxConnectionAgeGraceSeconds | quote }}
- name: SONGSMITH_DRAIN_DELAY_S
  value: {{ $root.Values.global.shutdown.drainDelaySeconds | quote }}
- name: SONGSMITH_SHUTDOWN_GRACE_S
  value: {{ $root.Values.global.shutdown.graceSeconds | quote }}
- name: SONGSMITH_LOG_FORMAT
  value: {{ $root.Values.global.logFormat | quote }}
- name: SONGSMITH_LOG_LEVEL
  value: {{ $root.Values.global.logLevel | quote }}
- name: HF_HUB_OFFLINE
  value: "1"
{{- if eq $stage "gateway" }}
{{- include "songsmith.gatewayEnv" $root }}
{{- else }}
{{- if eq $stage "chart" }}
- name: SONGSMITH_MODEL_DIR
  value: {{ $root.Values.stages.chart.model.path | quote }}
{{- else if $instance.modelDir }}
- name: SONGSMITH_MODEL_DIR
  value: {{ printf "%s/%s" $root.Values.models.mountPath $instance.modelDir | quote }}
{{- end }}
{{- with $instance.modelName }}
- name: SONGSMITH_MODEL_NAME
  value: {{ . | quote }}
{{- end }}
{{- with $instance.family }}
- name: SONGSMITH_FAMILY
  value: {{ . | quote }}
{{- end }}
{{- $gpu := eq (toString $c.gpu) "true" }}
{{- if ne $stage "tokenizer" }}
- name: SONGSMITH_DEVICE
  value: {{ ternary "cuda" "cpu" $gpu | quote }}
{{- end }}
{{- if eq $stage "diffusion" }}
- name: SONGSMITH_DTYPE
  value: {{ ternary $c.dtype "float32" $gpu | quote }}
- name: SONGSMITH_MAX_BATCH
  value: {{ $c.batching.maxBatch | int64 | quote }}
{{- end }}
{{- if eq $stage "vocoder" }}
- name: SONGSMITH_MAX_WINDOW_BATCH
  value: {{ $c.batching.maxWindowBatch | int64 | quote }}
{{- end }}
{{- if $root.Values.mtls.enabled }}
- name: SONGSMITH_TLS_CERT
  value: /etc/songsmith/tls/tls.crt
- name: SONGSMITH_TLS_KEY
  value: /etc/songsmith/tls/tls.key
- name: SONGSMITH_TLS_CLIENT_CA
  value: /etc/songsmith/tls/ca.crt
{{- end }}
{{- end }}
- name: OTEL_SERVICE_NAME
  value: songsmith-{{ $instance.name }}
{{- if $root.Values.tracing.enabled }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ include "songsmith.otlpEndpoint" $root | quote }}
- name: OTEL_TRACES_SAMPLER
  value: {{ $root.Values.tracing.sampler | quote }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ $root.Values.tracing.samplerArg | quote }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: "service.namespace={{ $fullname }},service.version={{ $root.Chart.AppVersion }},k8s.namespace.name=$(POD_NAMESPACE),k8s.pod.name=$(POD_NAME)"
{{- else }}
- name: OTEL_TRACES_EXPORTER
  value: none
{{- end }}
{{- range $key, $value := $c.env }}
- name: {{ $key }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end -}}

{{/* The gateway's own variables: the routed models, the chart stage, jobs and their store. */}}
{{- define "songsmith.gatewayEnv" -}}
{{- $root := . -}}
{{- $g := .Values.gateway -}}
{{- $plan := include "songsmith.plan" $root | fromYaml }}
- name: SONGSMITH_MODELS
  value: {{ include "songsmith.routesYaml" (dict "root" $root "plan" $plan) | trim | quote }}
{{- if .Values.stages.chart.enabled }}
- name: SONGSMITH_CHART_TARGET
  value: {{ include "songsmith.target" (dict "root" $root "name" "chart" "port" .Values.stages.chart.port) | quote }}
{{- end }}
- name: SONGSMITH_MAX_RUNNING_JOBS
  value: {{ $g.jobs.maxRunning | int64 | quote }}
- name: SONGSMITH_MAX_QUEUED_JOBS
  value: {{ $g.jobs.maxQueued | int64 | quote }}
- name: SONGSMITH_JOB_TIMEOUT_S
  value: {{ $g.jobs.timeoutSeconds | quote }}
- name: SONGSMITH_RESUME_BUDGET_S
  value: {{ $g.jobs.resumeBudgetSeconds | quote }}
- name: SONGSMITH_AUTH_TOKENS_FILE
  value: /etc/songsmith/auth/{{ $g.auth.tokensKey }}
{{- with $g.jobs.database.existingSecret }}
- name: SONGSMITH_JOBS_DB
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $g.jobs.database.key }}
- name: SONGSMITH_JOB_LEASE_S
  value: {{ $g.jobs.lease.seconds | quote }}
- name: SONGSMITH_JOB_POLL_S
  value: {{ $g.jobs.lease.pollSeconds | quote }}
{{- else }}
- name: SONGSMITH_JOBS_DB
  value: /var/lib/songsmith/jobs.sqlite3
{{- end }}
- name: SONGSMITH_RESULTS_DIR
  value: /var/lib/songsmith/results
{{- if .Values.mtls.enabled }}
- name: SONGSMITH_STAGE_TLS_CA
  value: /etc/songsmith/tls/ca.crt
- name: SONGSMITH_STAGE_TLS_CERT
  value: /etc/songsmith/tls/tls.crt
- name: SONGSMITH_STAGE_TLS_KEY
  value: /etc/songsmith/tls/tls.key
{{- end }}
{{- end -}}

{{/* Node placement: a `gpu: true` component gets the gpu block's node labels, tolerations and
RuntimeClass under its own. A stage on a volume of its own (models.delivery volumePerStage) keeps its
replicas on the node that mounts it. */}}
{{- define "songsmith.placement" -}}
{{- $root := .root -}}
{{- $c := .instance.settings -}}
{{- $gpu := $root.Values.gpu -}}
{{- $nodeSelector := $c.nodeSelector | default dict -}}
{{- $tolerations := $c.tolerations | default list -}}
{{- $runtimeClass := $c.runtimeClassName -}}
{{- if eq (toString $c.gpu) "true" -}}
{{- $nodeSelector = merge (deepCopy $nodeSelector) $gpu.nodeSelector -}}
{{- $tolerations = concat $gpu.tolerations $tolerations -}}
{{- $runtimeClass = $runtimeClass | default $gpu.runtimeClassName -}}
{{- end -}}
{{- $affinity := deepCopy ($c.affinity | default dict) -}}
{{- $ownVolume := and (include "songsmith.modelsMounted" .) (eq $root.Values.models.delivery "volumePerStage") -}}
{{- if $ownVolume -}}
{{- $podAffinity := $affinity.podAffinity | default dict -}}
{{- $required := $podAffinity.requiredDuringSchedulingIgnoredDuringExecution | default list -}}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (include "songsmith.selectorLabels" (dict "root" $root "name" .instance.name) | fromYaml)) -}}
{{- $_ := set $podAffinity "requiredDuringSchedulingIgnoredDuringExecution" (append $required $term) -}}
{{- $_ := set $affinity "podAffinity" $podAffinity -}}
{{- end -}}
{{- with $nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $runtimeClass }}
runtimeClassName: {{ . }}
{{- end }}
{{- if and $root.Values.global.topologySpread.enabled (not $ownVolume) }}
topologySpreadConstraints:
  - maxSkew: {{ $root.Values.global.topologySpread.maxSkew }}
    topologyKey: {{ $root.Values.global.topologySpread.topologyKey }}
    whenUnsatisfiable: {{ $root.Values.global.topologySpread.whenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "songsmith.selectorLabels" (dict "root" $root "name" .instance.name) | nindent 8 }}
{{- end }}
{{- end -}}

{{/* The volume the instance's models are on. */}}
{{- define "songsmith.modelsVolume" -}}
{{- $root := .root -}}
{{- $models := $root.Values.models -}}
- name: models
{{- if eq $models.delivery "download" }}
{{- if eq $models.podVolume.type "ephemeral" }}
  ephemeral:
    volumeClaimTemplate:
      metadata:
        labels:
          {{- include "songsmith.componentLabels" (dict "root" $root "name" .instance.name "stage" .instance.stage) | nindent 10 }}
      spec:
        accessModes: [ReadWriteOnce]
        {{- with $models.podVolume.storageClassName }}
        storageClassName: {{ . }}
        {{- end }}
        resources:
          requests:
            storage: {{ $models.podVolume.size }}
{{- else }}
  emptyDir:
    sizeLimit: {{ $models.podVolume.size }}
{{- end }}
{{- else if eq $models.delivery "volumePerStage" }}
  persistentVolumeClaim:
    claimName: {{ include "songsmith.componentName" (dict "root" $root "name" .instance.name) }}-models
{{- else }}
  persistentVolumeClaim:
    claimName: {{ include "songsmith.sharedClaimName" $root }}
{{- end }}
{{- end -}}

{{- define "songsmith.podTemplate" -}}
{{- $root := .root -}}
{{- $instance := .instance -}}
{{- $c := $instance.settings -}}
{{- $g := $root.Values.global -}}
{{- $models := $root.Values.models -}}
{{- $variant := ternary $c.image.variant (ternary "cuda" "cpu" (eq (toString $c.gpu) "true")) (eq $instance.stage "gateway") -}}
{{- $image := include "songsmith.image" (dict "root" $root "image" $c.image "variant" $variant) -}}
{{- $labelContext := dict "root" $root "name" $instance.name "stage" (ternary "" $instance.stage (eq $instance.stage "gateway")) -}}
{{- $mounted := include "songsmith.modelsMounted" . -}}
{{- $loads := and $mounted (has $models.delivery (list "download" "volumePerStage")) -}}
{{- $waits := and $mounted (eq $models.delivery "sharedVolume") (eq $models.sharedVolume.loader "job") -}}
{{- $chartClaim := and (eq $instance.stage "chart") (eq $root.Values.stages.chart.model.from "claim") -}}
metadata:
  labels:
    {{- include "songsmith.componentLabels" $labelContext | nindent 4 }}
  annotations:
    {{- $annotations := dict "kubectl.kubernetes.io/default-container" $instance.stage }}
    {{- if $root.Values.metrics.scrapeAnnotations }}
    {{- $_ := set $annotations "prometheus.io/scrape" "true" }}
    {{- $_ := set $annotations "prometheus.io/port" ($c.metricsPort | int64 | toString) }}
    {{- $_ := set $annotations "prometheus.io/path" "/metrics" }}
    {{- end }}
    {{- /* The component's own annotations win. */}}
    {{- toYaml (merge (deepCopy ($c.podAnnotations | default dict)) $annotations) | nindent 4 }}
spec:
  serviceAccountName: {{ include "songsmith.serviceAccountName" $root }}
  automountServiceAccountToken: false
  # Service links would inject SONGSMITH_* variables (e.g. SONGSMITH_PORT) that collide with the config.
  enableServiceLinks: false
  terminationGracePeriodSeconds: {{ include "songsmith.terminationGracePeriodSeconds" $root }}
  {{- with $g.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $g.podSecurityContext | nindent 4 }}
  {{- include "songsmith.placement" . | nindent 2 }}
  {{- if or $loads $waits }}
  initContainers:
    {{- if $waits }}
    - name: wait-for-models
      image: {{ $image }}
      imagePullPolicy: {{ $g.image.pullPolicy }}
      command: ["sh", "-c"]
      args:
        - until [ -f {{ include "songsmith.readyFile" (dict "root" $root "image" (include "songsmith.gatewayImage" $root)) }} ]; do echo "waiting for the model job"; sleep 5; done
      securityContext:
        {{- toYaml $g.containerSecurityContext | nindent 8 }}
      resources:
        requests: {cpu: 10m, memory: 32Mi}
        limits: {memory: 64Mi}
      volumeMounts:
        - name: models
          mountPath: {{ $models.mountPath }}
          readOnly: true
    {{- else }}
    - name: pull-models
      image: {{ $image }}
      imagePullPolicy: {{ $g.image.pullPolicy }}
      command: ["sh", "-c"]
      args:
        - {{ include "songsmith.loaderScript" (dict "root" $root "instance" $instance "image" $image) | quote }}
      env:
        {{- include "songsmith.loaderEnv" $root | nindent 8 }}
      securityContext:
        {{- toYaml $g.containerSecurityContext | nindent 8 }}
      resources:
        {{- include "songsmith.resources" $models.loader.resources | nindent 8 }}
      volumeMounts:
        - name: models
          mountPath: {{ $models.mountPath }}
        - name: tmp
          mountPath: /tmp
        - name: home
          mountPath: /home/songsmith
    {{- end }}
  {{- end }}
  containers:
    - name: {{ $instance.stage }}
      image: {{ $image }}
      imagePullPolicy: {{ $g.image.pullPolicy }}
      args: ["serve", {{ $instance.stage | quote }}]
      ports:
        - name: grpc
          containerPort: {{ $c.port | int64 }}
          protocol: TCP
        - name: metrics
          containerPort: {{ $c.metricsPort | int64 }}
          protocol: TCP
      env:
        {{- include "songsmith.env" . | nindent 8 }}
      resources:
        {{- include "songsmith.podResources" . | nindent 8 }}
      securityContext:
        {{- toYaml $g.containerSecurityContext | nindent 8 }}
      startupProbe:
        {{- include "songsmith.servingProbe" . | nindent 8 }}
        {{- toYaml $c.probes.startup | nindent 8 }}
      readinessProbe:
        {{- include "songsmith.servingProbe" . | nindent 8 }}
        {{- toYaml $c.probes.readiness | nindent 8 }}
      livenessProbe:
        {{- include "songsmith.aliveProbe" . | nindent 8 }}
        {{- toYaml $c.probes.liveness | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        - name: home
          mountPath: /home/songsmith
        {{- if $mounted }}
        - name: models
          mountPath: {{ $models.mountPath }}
          readOnly: true
        {{- end }}
        {{- if $chartClaim }}
        - name: chart-model
          mountPath: {{ $root.Values.stages.chart.model.path }}
          {{- with $root.Values.stages.chart.model.subPath }}
          subPath: {{ . }}
          {{- end }}
          readOnly: true
        {{- end }}
        {{- if $root.Values.mtls.enabled }}
        - name: tls
          mountPath: /etc/songsmith/tls
          readOnly: true
        {{- end }}
        {{- if eq $instance.stage "gateway" }}
        - name: auth
          mountPath: /etc/songsmith/auth
          readOnly: true
        - name: data
          mountPath: /var/lib/songsmith
        {{- end }}
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: {{ $g.scratch.tmpSizeLimit }}
    - name: home
      emptyDir:
        sizeLimit: {{ $g.scratch.homeSizeLimit }}
    {{- if $mounted }}
    {{- include "songsmith.modelsVolume" . | nindent 4 }}
    {{- end }}
    {{- if $chartClaim }}
    - name: chart-model
      persistentVolumeClaim:
        claimName: {{ $root.Values.stages.chart.model.existingClaim }}
        readOnly: true
    {{- end }}
    {{- if $root.Values.mtls.enabled }}
    - name: tls
      secret:
        secretName: {{ include "songsmith.mtlsSecretName" (dict "root" $root "name" $instance.name) }}
        defaultMode: 0440
    {{- end }}
    {{- if eq $instance.stage "gateway" }}
    - name: auth
      secret:
        secretName: {{ include "songsmith.authSecretName" . }}
        defaultMode: 0440
        items:
          - key: {{ $c.auth.tokensKey }}
            path: {{ $c.auth.tokensKey }}
    - name: data
      {{- if $c.persistence.enabled }}
      persistentVolumeClaim:
        claimName: {{ $c.persistence.existingClaim | default (printf "%s-data" (include "songsmith.componentName" (dict "root" $root "name" "gateway"))) }}
      {{- else }}
      emptyDir: {}
      {{- end }}
    {{- end }}
{{- end -}}
