{{/* Names and labels, as the prometheus-community charts spell them. */}}
{{- define "sparki-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sparki-exporter.fullname" -}}
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

{{- define "sparki-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sparki-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sparki-exporter.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "sparki-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: exporter
{{- end -}}

{{- define "sparki-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sparki-exporter.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "sparki-exporter.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "sparki-exporter.configMapName" -}}
{{- default (printf "%s-config" (include "sparki-exporter.fullname" .)) .Values.existingConfigMap -}}
{{- end -}}

{{- define "sparki-exporter.secretName" -}}
{{- default (printf "%s-secrets" (include "sparki-exporter.fullname" .)) .Values.existingSecret -}}
{{- end -}}

{{- define "sparki-exporter.hasSecret" -}}
{{- if or .Values.existingSecret .Values.secrets -}}true{{- end -}}
{{- end -}}

{{- define "sparki-exporter.podCount" -}}
{{- if .Values.sharding.enabled -}}
{{- mul .Values.sharding.shards .Values.sharding.replicasPerShard -}}
{{- else -}}
{{- .Values.replicaCount -}}
{{- end -}}
{{- end -}}

{{/* The pod template, shared by the Deployment and the StatefulSet. */}}
{{- define "sparki-exporter.podTemplate" -}}
metadata:
  labels:
    {{- include "sparki-exporter.labels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    {{- if not .Values.existingConfigMap }}
    checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
    {{- end }}
    {{- if .Values.secrets }}
    checksum/secret: {{ include (print $.Template.BasePath "/secret.yaml") . | sha256sum }}
    {{- end }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "sparki-exporter.serviceAccountName" . }}
  automountServiceAccountToken: {{ .Values.serviceAccount.automountServiceAccountToken }}
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  containers:
    - name: sparki-exporter
      image: {{ include "sparki-exporter.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        - --config=/etc/sparki/config/sparki.yml
        - --web.listen-address=:9840
        {{- if .Values.webConfig.existingSecret }}
        - --web.config.file=/etc/sparki/web/web.yml
        {{- end }}
        {{- if .Values.sharding.enabled }}
        - --shard.count={{ .Values.sharding.shards }}
        - --shard.index=auto
        {{- end }}
        {{- range .Values.extraArgs }}
        - {{ . | quote }}
        {{- end }}
      ports:
        - name: metrics
          containerPort: 9840
          protocol: TCP
      {{- if or .Values.secretEnv .Values.extraEnv }}
      env:
        {{- range .Values.secretEnv }}
        - name: {{ .name }}
          valueFrom:
            secretKeyRef:
              name: {{ include "sparki-exporter.secretName" $ }}
              key: {{ .key }}
        {{- end }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- end }}
      {{- if .Values.webConfig.existingSecret }}
      # TLS or basic auth: an HTTP probe cannot present credentials; the subcommand
      # tries HTTPS and counts a 401 as alive.
      livenessProbe:
        exec:
          command: [sparki-exporter, healthcheck, --web.listen-address, ":9840"]
        periodSeconds: 20
        timeoutSeconds: 5
      {{- else }}
      livenessProbe:
        {{- toYaml .Values.livenessProbe | nindent 8 }}
      readinessProbe:
        {{- toYaml .Values.readinessProbe | nindent 8 }}
      {{- end }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/sparki/config
          readOnly: true
        {{- if include "sparki-exporter.hasSecret" . }}
        - name: secrets
          mountPath: /etc/sparki/secrets
          readOnly: true
        {{- end }}
        {{- if .Values.webConfig.existingSecret }}
        - name: web
          mountPath: /etc/sparki/web
          readOnly: true
        {{- end }}
        - name: tmp
          mountPath: /tmp
  volumes:
    - name: config
      configMap:
        name: {{ include "sparki-exporter.configMapName" . }}
    {{- if include "sparki-exporter.hasSecret" . }}
    - name: secrets
      secret:
        secretName: {{ include "sparki-exporter.secretName" . }}
        defaultMode: 0440
    {{- end }}
    {{- if .Values.webConfig.existingSecret }}
    - name: web
      secret:
        secretName: {{ .Values.webConfig.existingSecret }}
        defaultMode: 0440
    {{- end }}
    - name: tmp
      emptyDir:
        sizeLimit: 16Mi
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
