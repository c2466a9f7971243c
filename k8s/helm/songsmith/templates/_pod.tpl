{{/*
The pod template of one component. Context: dict "root" $ "name" <component> "c" <values block>.
*/}}

{{- define "songsmith.autoscaled" -}}
{{- if and (ne .root.Values.autoscaling.mode "none") .c.autoscaling.enabled -}}true{{- end -}}
{{- end -}}

{{- define "songsmith.modelsMounted" -}}
{{- if and (ne .name "gateway") .c.modelDir -}}true{{- end -}}
{{- end -}}

{{- define "songsmith.probeAction" -}}
{{- if and .root.Values.mtls.enabled (ne .name "gateway") -}}
exec:
  command:
    - songsmith-healthcheck
    - --port={{ .c.port }}
    - --service={{ .c.healthService }}
    - --tls-dir=/etc/songsmith/tls
    - --server-name={{ include "songsmith.headlessName" . }}
{{- else -}}
grpc:
  port: {{ .c.port }}
  service: {{ .c.healthService }}
{{- end -}}
{{- end -}}

{{- define "songsmith.env" -}}
{{- $root := .root -}}
{{- $c := .c -}}
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
  value: {{ $c.port | quote }}
- name: SONGSMITH_METRICS_PORT
  value: {{ $c.metricsPort | quote }}
- name: SONGSMITH_MAX_MESSAGE_BYTES
  value: {{ $c.grpc.maxMessageBytes | int64 | quote }}
- name: SONGSMITH_MAX_CONCURRENT
  value: {{ $c.grpc.maxConcurrent | quote }}
- name: SONGSMITH_MAX_QUEUE
  value: {{ $c.grpc.maxQueue | quote }}
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
{{- if ne .name "gateway" }}
{{- if $c.modelDir }}
- name: SONGSMITH_MODEL_DIR
  value: {{ printf "%s/%s" $root.Values.models.mountPath $c.modelDir | quote }}
{{- end }}
{{- if $c.device }}
- name: SONGSMITH_DEVICE
  value: {{ $c.device | quote }}
{{- end }}
{{- if $c.dtype }}
- name: SONGSMITH_DTYPE
  value: {{ $c.dtype | quote }}
{{- end }}
{{- if $root.Values.mtls.enabled }}
- name: SONGSMITH_TLS_CERT
  value: /etc/songsmith/tls/tls.crt
- name: SONGSMITH_TLS_KEY
  value: /etc/songsmith/tls/tls.key
- name: SONGSMITH_TLS_CLIENT_CA
  value: /etc/songsmith/tls/ca.crt
{{- end }}
{{- else }}
{{- range $stage := splitList " " (include "songsmith.stageNames" $root) }}
- name: SONGSMITH_{{ upper $stage }}_TARGET
  value: {{ printf "dns:///%s.%s.svc.%s:%v" (include "songsmith.headlessName" (dict "root" $root "name" $stage)) $root.Release.Namespace $root.Values.global.clusterDomain (index $root.Values.stages $stage).port | quote }}
{{- end }}
- name: SONGSMITH_MAX_RUNNING_JOBS
  value: {{ $c.jobs.maxRunning | quote }}
- name: SONGSMITH_MAX_QUEUED_JOBS
  value: {{ $c.jobs.maxQueued | quote }}
- name: SONGSMITH_JOB_TIMEOUT_S
  value: {{ $c.jobs.timeoutSeconds | quote }}
- name: SONGSMITH_DIFFUSION_RETRIES
  value: {{ $c.jobs.diffusionRetries | quote }}
- name: SONGSMITH_AUTH_TOKENS_FILE
  value: /etc/songsmith/auth/{{ $c.auth.tokensKey }}
- name: SONGSMITH_JOBS_DB
  value: /var/lib/songsmith/jobs.sqlite3
- name: SONGSMITH_RESULTS_DIR
  value: /var/lib/songsmith/results
{{- if $root.Values.mtls.enabled }}
- name: SONGSMITH_STAGE_TLS_CA
  value: /etc/songsmith/tls/ca.crt
- name: SONGSMITH_STAGE_TLS_CERT
  value: /etc/songsmith/tls/tls.crt
- name: SONGSMITH_STAGE_TLS_KEY
  value: /etc/songsmith/tls/tls.key
{{- end }}
{{- end }}
- name: OTEL_SERVICE_NAME
  value: songsmith-{{ .name }}
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

{{- define "songsmith.podTemplate" -}}
{{- $root := .root -}}
{{- $c := .c -}}
{{- $g := $root.Values.global -}}
{{- $image := include "songsmith.image" (dict "root" $root "image" $c.image) -}}
{{- $models := $root.Values.models -}}
metadata:
  labels:
    {{- include "songsmith.componentLabels" . | nindent 4 }}
  annotations:
    {{- with $c.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    kubectl.kubernetes.io/default-container: {{ .name }}
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
  {{- with $c.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $c.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $c.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $c.runtimeClassName }}
  runtimeClassName: {{ . }}
  {{- end }}
  {{- if $g.topologySpread.enabled }}
  topologySpreadConstraints:
    - maxSkew: {{ $g.topologySpread.maxSkew }}
      topologyKey: {{ $g.topologySpread.topologyKey }}
      whenUnsatisfiable: {{ $g.topologySpread.whenUnsatisfiable }}
      labelSelector:
        matchLabels:
          {{- include "songsmith.selectorLabels" . | nindent 10 }}
  {{- end }}
  {{- if include "songsmith.modelsMounted" . }}
  initContainers:
    {{- if eq $models.loader "job" }}
    - name: wait-for-models
      image: {{ $image }}
      imagePullPolicy: {{ $g.image.pullPolicy }}
      command: ["sh", "-c"]
      args:
        - until [ -f {{ include "songsmith.modelsReadyFile" $root }} ]; do echo "waiting for the model job"; sleep 5; done
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
        - {{ include "songsmith.modelsCommand" $root | quote }}
      env:
        {{- include "songsmith.modelsEnv" $root | nindent 8 }}
      securityContext:
        {{- toYaml $g.containerSecurityContext | nindent 8 }}
      resources:
        {{- include "songsmith.resources" $models.job.resources | nindent 8 }}
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
    - name: {{ .name }}
      image: {{ $image }}
      imagePullPolicy: {{ $g.image.pullPolicy }}
      args: ["serve", {{ .name | quote }}]
      ports:
        - name: grpc
          containerPort: {{ $c.port }}
          protocol: TCP
        - name: metrics
          containerPort: {{ $c.metricsPort }}
          protocol: TCP
      env:
        {{- include "songsmith.env" . | nindent 8 }}
      resources:
        {{- include "songsmith.resources" $c.resources | nindent 8 }}
      securityContext:
        {{- toYaml $g.containerSecurityContext | nindent 8 }}
      startupProbe:
        {{- include "songsmith.probeAction" . | nindent 8 }}
        {{- toYaml $c.probes.startup | nindent 8 }}
      readinessProbe:
        {{- include "songsmith.probeAction" . | nindent 8 }}
        {{- toYaml $c.probes.readiness | nindent 8 }}
      livenessProbe:
        {{- include "songsmith.probeAction" . | nindent 8 }}
        {{- toYaml $c.probes.liveness | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        - name: home
          mountPath: /home/songsmith
        {{- if include "songsmith.modelsMounted" . }}
        - name: models
          mountPath: {{ $models.mountPath }}
          readOnly: true
        {{- end }}
        {{- if $root.Values.mtls.enabled }}
        - name: tls
          mountPath: /etc/songsmith/tls
          readOnly: true
        {{- end }}
        {{- if eq .name "gateway" }}
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
    {{- if include "songsmith.modelsMounted" . }}
    - name: models
      persistentVolumeClaim:
        claimName: {{ include "songsmith.modelsClaimName" $root }}
    {{- end }}
    {{- if $root.Values.mtls.enabled }}
    - name: tls
      secret:
        secretName: {{ include "songsmith.mtlsSecretName" . }}
        defaultMode: 0440
    {{- end }}
    {{- if eq .name "gateway" }}
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
        claimName: {{ $c.persistence.existingClaim | default (printf "%s-data" (include "songsmith.componentName" .)) }}
      {{- else }}
      emptyDir: {}
      {{- end }}
    {{- end }}
{{- end -}}

{{/* Environment of a container that downloads models (the job or the pull-models init container). */}}
{{- define "songsmith.modelsEnv" -}}
- name: HF_HUB_OFFLINE
  value: "0"
{{- range $key, $value := .Values.models.env }}
- name: {{ $key }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- with .Values.models.huggingFaceTokenSecret }}
- name: HF_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: HF_TOKEN
{{- end }}
{{- end -}}
