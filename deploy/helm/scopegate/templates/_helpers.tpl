{{/* Names: <release>-scopegate (or the release name when it already contains "scopegate"). */}}
{{- define "scopegate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "scopegate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "scopegate.authz.name" -}}{{ include "scopegate.fullname" . }}-authz{{- end -}}
{{- define "scopegate.xds.name" -}}{{ include "scopegate.fullname" . }}-xds{{- end -}}
{{- define "scopegate.envoy.name" -}}{{ include "scopegate.fullname" . }}-envoy{{- end -}}

{{- define "scopegate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "scopegate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "scopegate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "scopegate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: scopegate
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: call with (dict "root" $ "component" "authz"). */}}
{{- define "scopegate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "scopegate.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "scopegate.componentLabels" -}}
{{ include "scopegate.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "scopegate.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}
{{- end -}}

{{- define "scopegate.envoy.image" -}}
{{- if .Values.envoy.image.digest -}}
{{ .Values.envoy.image.repository }}@{{ .Values.envoy.image.digest }}
{{- else -}}
{{ .Values.envoy.image.repository }}:{{ .Values.envoy.image.tag }}
{{- end -}}
{{- end -}}

{{- define "scopegate.sidecar" -}}{{ eq .Values.authz.mode "sidecar" }}{{- end -}}

{{/* Where Envoy reaches authz, as the xds config's authz.address. */}}
{{/* The sidecar's socket, in an emptyDir both containers mount: no network hop, no TLS. */}}
{{- define "scopegate.authz.socketDir" -}}/var/run/scopegate{{- end -}}
{{- define "scopegate.authz.address" -}}
{{- if eq .Values.authz.mode "sidecar" -}}
unix://{{ include "scopegate.authz.socketDir" . }}/authz.sock
{{- else -}}
{{ include "scopegate.authz.name" . }}.{{ .Release.Namespace }}.svc:{{ .Values.authz.ports.grpc }}
{{- end -}}
{{- end -}}

{{- define "scopegate.xds.address" -}}
{{ include "scopegate.xds.name" . }}.{{ .Release.Namespace }}.svc:{{ .Values.xds.ports.grpc }}
{{- end -}}

{{- define "scopegate.tls.authzSecret" -}}{{ default (printf "%s-authz-tls" (include "scopegate.fullname" .)) .Values.tls.authzSecret }}{{- end -}}
{{- define "scopegate.tls.xdsSecret" -}}{{ default (printf "%s-xds-tls" (include "scopegate.fullname" .)) .Values.tls.xdsSecret }}{{- end -}}
{{- define "scopegate.tls.envoyClientSecret" -}}{{ default (printf "%s-envoy-client-tls" (include "scopegate.fullname" .)) .Values.tls.envoyClientSecret }}{{- end -}}
{{- define "scopegate.tls.authzClientSecret" -}}{{ default (printf "%s-authz-client-tls" (include "scopegate.fullname" .)) .Values.tls.authzClientSecret }}{{- end -}}
{{/* The identity of the authz client certificate: what authz's tls.client_uri_sans admits. */}}
{{- define "scopegate.tls.authzClientURI" -}}spiffe://{{ .Values.tls.trustDomain }}/authz-client{{- end -}}
{{/* Where the DPoP nonce key is mounted in the authz container. */}}
{{- define "scopegate.authz.dpopNonceDir" -}}/etc/scopegate/dpop-nonce{{- end -}}

{{/* The authz config file: the user's config with the chart's addresses, policy and TLS. */}}
{{- define "scopegate.authz.config" -}}
{{- $cfg := deepCopy .Values.authz.config -}}
{{- if eq .Values.authz.mode "sidecar" -}}
{{- $_ := set $cfg "listen" (include "scopegate.authz.address" .) -}}
{{- else -}}
{{- $_ := set $cfg "listen" (printf ":%v" .Values.authz.ports.grpc) -}}
{{- end -}}
{{- $_ := set $cfg "admin" (printf ":%v" .Values.authz.ports.admin) -}}
{{- $_ := set $cfg "drain_delay" (printf "%vs" .Values.authz.drain.delaySeconds) -}}
{{- $_ := set $cfg "shutdown_timeout" (printf "%vs" .Values.authz.drain.shutdownTimeoutSeconds) -}}
{{- if .Values.authz.policies -}}
{{- $policy := default dict (get $cfg "policy") -}}
{{- $_ := set $policy "path" "/etc/scopegate/policies" -}}
{{- $_ := set $policy "watch" true -}}
{{- $_ := set $cfg "policy" $policy -}}
{{- end -}}
{{- if and .Values.tls.enabled (ne .Values.authz.mode "sidecar") -}}
{{- $_ := set $cfg "tls" (dict "cert_file" "/etc/scopegate/tls/tls.crt" "key_file" "/etc/scopegate/tls/tls.key" "client_ca_file" "/etc/scopegate/tls/ca.crt" "client_uri_sans" (list (include "scopegate.tls.authzClientURI" .))) -}}
{{- end -}}
{{- if .Values.authz.dpopNonceKey.secretName -}}
{{- $_ := set $cfg "dpop_nonce" true -}}
{{- $_ := set $cfg "dpop_nonce_key_file" (printf "%s/%s" (include "scopegate.authz.dpopNonceDir" .) .Values.authz.dpopNonceKey.key) -}}
{{- end -}}
{{- with .Values.sharedState -}}{{- if .enabled -}}
{{- $redis := dict "addresses" .addresses "db" .db "key_prefix" .keyPrefix -}}
{{- if .username -}}{{- $_ := set $redis "username" .username -}}{{- end -}}
{{- if .passwordSecret.name -}}{{- $_ := set $redis "password_file" (printf "%s/password/%s" (include "scopegate.sharedState.dir" $) .passwordSecret.key) -}}{{- end -}}
{{- if .tls.enabled -}}
{{- $tls := dict -}}
{{- if .tls.secret -}}{{- $_ := set $tls "ca_file" (printf "%s/tls/ca.crt" (include "scopegate.sharedState.dir" $)) -}}{{- end -}}
{{- if .tls.clientCertificate -}}
{{- $_ := set $tls "cert_file" (printf "%s/tls/tls.crt" (include "scopegate.sharedState.dir" $)) -}}
{{- $_ := set $tls "key_file" (printf "%s/tls/tls.key" (include "scopegate.sharedState.dir" $)) -}}
{{- end -}}
{{- if .tls.serverName -}}{{- $_ := set $tls "server_name" .tls.serverName -}}{{- end -}}
{{- $_ := set $redis "tls" $tls -}}
{{- end -}}
{{- $state := dict "redis" $redis "on_unavailable" .onUnavailable -}}
{{- if .keySecret.name -}}{{- $_ := set $state "key_file" (printf "%s/key/%s" (include "scopegate.sharedState.dir" $) .keySecret.key) -}}{{- end -}}
{{- $_ := set $cfg "shared_state" $state -}}
{{- end -}}{{- end -}}
{{- if eq .Values.mode "mesh" -}}
{{- $_ := set $cfg "routes_file" "/etc/scopegate/routes/xds.yaml" -}}
{{- $_ := set $cfg "unmatched" .Values.mesh.unmatched -}}
{{- end -}}
{{ toYaml $cfg }}
{{- end -}}

{{/* Where the shared state store's Secrets are mounted in the authz container. */}}
{{- define "scopegate.sharedState.dir" -}}/etc/scopegate/shared-state{{- end -}}

{{/* mesh mode's route table: mesh.routes, or xds.config's. */}}
{{- define "scopegate.mesh.routes" -}}
{{ toYaml (default .Values.xds.config .Values.mesh.routes) }}
{{- end -}}

{{/* The xds config file: the user's config with the chart's addresses and TLS. */}}
{{- define "scopegate.xds.config" -}}
{{- $cfg := deepCopy .Values.xds.config -}}
{{- $_ := set $cfg "listen" (printf ":%v" .Values.xds.ports.grpc) -}}
{{- $_ := set $cfg "admin" (printf ":%v" .Values.xds.ports.admin) -}}
{{- $authz := default dict (get $cfg "authz") -}}
{{- $_ := set $authz "address" (include "scopegate.authz.address" .) -}}
{{- if and .Values.tls.enabled (ne .Values.authz.mode "sidecar") -}}
{{- $_ := set $authz "tls" (dict "ca_file" "/etc/scopegate/authz-client-tls/ca.crt" "server_name" (printf "%s.%s.svc" (include "scopegate.authz.name" .) .Release.Namespace) "cert_file" "/etc/scopegate/authz-client-tls/tls.crt" "key_file" "/etc/scopegate/authz-client-tls/tls.key") -}}
{{- end -}}
{{- $_ := set $cfg "authz" $authz -}}
{{- if .Values.tls.enabled -}}
{{- $_ := set $cfg "tls" (dict "cert_file" "/etc/scopegate/tls/tls.crt" "key_file" "/etc/scopegate/tls/tls.key" "client_ca_file" "/etc/scopegate/tls/ca.crt" "trust_domain" .Values.tls.trustDomain) -}}
{{- end -}}
{{ toYaml $cfg }}
{{- end -}}

{{- define "scopegate.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "scopegate.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
privileged: false
capabilities:
  drop: [ALL]
{{- end -}}

{{/* Spread a component's pods across zones and nodes; call with (dict "root" $ "component" "authz"). */}}
{{- define "scopegate.topologySpread" -}}
- maxSkew: 1
  topologyKey: topology.kubernetes.io/zone
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "scopegate.selectorLabels" . | nindent 6 }}
  matchLabelKeys: [pod-template-hash]
- maxSkew: 1
  topologyKey: kubernetes.io/hostname
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "scopegate.selectorLabels" . | nindent 6 }}
  matchLabelKeys: [pod-template-hash]
{{- end -}}

{{/* The authz container, in its Deployment or as the Envoy pod's sidecar. */}}
{{- define "scopegate.authz.container" -}}
- name: authz
  image: {{ include "scopegate.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args: [authz, --config, /etc/scopegate/config/authz.yaml]
  {{- if gt (int .Values.authz.drain.preStopSeconds) 0 }}
  # Holds SIGTERM back (the drain itself starts on SIGTERM: see authz.drain in values.yaml).
  lifecycle:
    preStop:
      sleep: {seconds: {{ .Values.authz.drain.preStopSeconds }}}
  {{- end }}
  ports:
    {{- if ne .Values.authz.mode "sidecar" }}
    - name: grpc
      containerPort: {{ .Values.authz.ports.grpc }}
      protocol: TCP
    {{- end }}
    - name: admin
      containerPort: {{ .Values.authz.ports.admin }}
      protocol: TCP
  {{- with .Values.authz.env }}
  env:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  # Ready once every issuer has keys and a policy revision is in force (fail closed until then).
  readinessProbe:
    httpGet: {path: /readyz, port: admin}
    periodSeconds: 5
    failureThreshold: 2
  livenessProbe:
    httpGet: {path: /healthz, port: admin}
    periodSeconds: 10
    failureThreshold: 3
  resources:
    {{- toYaml .Values.authz.resources | nindent 4 }}
  securityContext:
    {{- include "scopegate.containerSecurityContext" . | nindent 4 }}
    {{- if eq .Values.authz.mode "sidecar" }}
    # Envoy's user: the socket is created 0600, so only Envoy (and authz) can connect.
    runAsUser: 101
    runAsGroup: 101
    {{- end }}
  volumeMounts:
    {{- if eq .Values.authz.mode "sidecar" }}
    - name: authz-socket
      mountPath: {{ include "scopegate.authz.socketDir" . }}
    {{- end }}
    - name: authz-config
      mountPath: /etc/scopegate/config
      readOnly: true
    {{- if .Values.authz.policies }}
    - name: authz-policies
      mountPath: /etc/scopegate/policies
      readOnly: true
    {{- end }}
    {{- if eq .Values.mode "mesh" }}
    - name: authz-routes
      mountPath: /etc/scopegate/routes
      readOnly: true
    {{- end }}
    {{- if and .Values.tls.enabled (ne .Values.authz.mode "sidecar") }}
    - name: authz-tls
      mountPath: /etc/scopegate/tls
      readOnly: true
    {{- end }}
    {{- if .Values.authz.dpopNonceKey.secretName }}
    - name: authz-dpop-nonce
      mountPath: {{ include "scopegate.authz.dpopNonceDir" . }}
      readOnly: true
    {{- end }}
    {{- range .Values.authz.secretMounts }}
    - name: {{ .name }}
      mountPath: {{ .mountPath }}
      readOnly: true
    {{- end }}
    {{- with .Values.sharedState }}{{- if .enabled }}
    {{- if .passwordSecret.name }}
    - name: shared-state-password
      mountPath: {{ include "scopegate.sharedState.dir" $ }}/password
      readOnly: true
    {{- end }}
    {{- if .keySecret.name }}
    - name: shared-state-key
      mountPath: {{ include "scopegate.sharedState.dir" $ }}/key
      readOnly: true
    {{- end }}
    {{- if and .tls.enabled .tls.secret }}
    - name: shared-state-tls
      mountPath: {{ include "scopegate.sharedState.dir" $ }}/tls
      readOnly: true
    {{- end }}
    {{- end }}{{- end }}
{{- end -}}

{{- define "scopegate.authz.volumes" -}}
{{- if eq .Values.authz.mode "sidecar" -}}
- name: authz-socket
  emptyDir: {medium: Memory, sizeLimit: 1Mi}
{{ end -}}
- name: authz-config
  configMap:
    name: {{ include "scopegate.authz.name" . }}
{{- if .Values.authz.policies }}
- name: authz-policies
  configMap:
    name: {{ include "scopegate.authz.name" . }}-policies
    items:
      {{- range $i, $p := .Values.authz.policies }}
      - key: {{ printf "p%d-%s" $i (base $p.path) }}
        path: {{ $p.path }}
      {{- end }}
{{- end }}
{{- if and .Values.tls.enabled (ne .Values.authz.mode "sidecar") }}
- name: authz-tls
  secret:
    secretName: {{ include "scopegate.tls.authzSecret" . }}
    defaultMode: 0440
{{- end }}
{{- if .Values.authz.dpopNonceKey.secretName }}
# The key every replica shares, so each accepts the others' nonces; only that key is projected.
- name: authz-dpop-nonce
  secret:
    secretName: {{ .Values.authz.dpopNonceKey.secretName }}
    defaultMode: 0440
    items:
      - key: {{ .Values.authz.dpopNonceKey.key }}
        path: {{ .Values.authz.dpopNonceKey.key }}
{{- end }}
{{- range .Values.authz.secretMounts }}
- name: {{ .name }}
  secret:
    secretName: {{ .secretName }}
    defaultMode: 0440
{{- end }}
{{- with .Values.sharedState }}{{- if .enabled }}
{{- if .passwordSecret.name }}
- name: shared-state-password
  secret:
    secretName: {{ .passwordSecret.name }}
    defaultMode: 0440
    items: [{key: {{ .passwordSecret.key }}, path: {{ .passwordSecret.key }}}]
{{- end }}
{{- if .keySecret.name }}
- name: shared-state-key
  secret:
    secretName: {{ .keySecret.name }}
    defaultMode: 0440
    items: [{key: {{ .keySecret.key }}, path: {{ .keySecret.key }}}]
{{- end }}
{{- if and .tls.enabled .tls.secret }}
- name: shared-state-tls
  secret:
    secretName: {{ .tls.secret }}
    defaultMode: 0440
{{- end }}
{{- end }}{{- end }}
{{- if eq .Values.mode "mesh" }}
- name: authz-routes
  configMap:
    name: {{ include "scopegate.authz.name" . }}-routes
{{- end }}
{{- end -}}

{{/* The authz pod's grace period: the preStop hook, the drain and the shutdown timeout, plus 5 s
for the process to exit, so the kubelet never kills a drain that does what it was told. */}}
{{- define "scopegate.authz.terminationGrace" -}}
{{- add .Values.authz.drain.preStopSeconds .Values.authz.drain.delaySeconds .Values.authz.drain.shutdownTimeoutSeconds 5 -}}
{{- end -}}
