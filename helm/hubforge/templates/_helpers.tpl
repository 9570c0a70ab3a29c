{{- define "hubforge.labels" -}}
app.kubernetes.io/part-of: hubforge
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "hubforge.workloadNamespace" -}}
{{ .Values.hubforge.service.namespace | default (printf "%s-workloads" .Release.Name) }}
{{- end }}

{{/* Whether jobs and endpoints live in a namespace of their own ("true" or ""). */}}
{{- define "hubforge.separateWorkloads" -}}
{{- if ne (include "hubforge.workloadNamespace" .) .Release.Namespace }}true{{ end }}
{{- end }}

{{/* The HDFS volume of job and endpoint pods. In a namespace of their own, NFS comes through
a PersistentVolume and claim the chart makes there (Pod Security "restricted" admits no inline
nfs volume); a CSI claim of the same name must exist in that namespace too. */}}
{{- define "hubforge.workloadHdfsVolume" -}}
{{- if and (eq .Values.hubforge.hdfs.mode "nfs") (include "hubforge.separateWorkloads" .) }}
persistentVolumeClaim:
  claimName: hubforge-hdfs
{{- else }}
{{- include "hubforge.hdfsVolume" . }}
{{- end }}
{{- end }}

{{/* The HDFS volume source (same in user pods, jobs, endpoints and TensorBoards). */}}
{{- define "hubforge.hdfsVolume" -}}
{{- $h := .Values.hubforge.hdfs -}}
{{- if eq $h.mode "nfs" }}
nfs:
  server: {{ required "hubforge.hdfs.nfs.server is needed for mode nfs" $h.nfs.server }}
  path: {{ $h.nfs.path | default "/" }}
{{- else if eq $h.mode "csi" }}
persistentVolumeClaim:
  claimName: {{ required "hubforge.hdfs.csi.claimName is needed for mode csi" $h.csi.claimName }}
{{- else }}
hostPath:
  path: {{ required "hubforge.hdfs.hostPath.path is needed for mode hostPath" $h.hostPath.path }}
  type: Directory
{{- end }}
{{- end }}

{{/* The hub's base URL (z2jh hub.baseUrl), always ending in "/". */}}
{{- define "hubforge.baseUrl" -}}
{{- $base := (.Values.jupyterhub.hub).baseUrl | default "/" -}}
{{ trimSuffix "/" $base }}/
{{- end }}
