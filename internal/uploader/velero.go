package uploader

import "maps"

// Velero 1.18 writes a snapshot (pkg/uploader/provider/kopia.go, pkg/uploader/kopia/snapshot.go)
// as default@default, with the source path <requester>/kopia/<real source>, the tags
// snapshot-requester and snapshot-uploader, the description "Kopia Uploader" and the pin
// velero-pin. It looks for a parent among the complete snapshots of the same source whose two
// tags equal its own; a snapshot Ferry writes into Velero's layout therefore carries all of
// them, and Ferry finds Velero's snapshots as parents by their source alone.
const (
	VeleroRequesterTag = "snapshot-requester"
	VeleroUploaderTag  = "snapshot-uploader"
	// VeleroPodVolumeRequester is the requester of file-system backups of pod volumes; their real
	// source is <namespace>/<pod>/<claim, or the volume's name when it has no claim>.
	VeleroPodVolumeRequester = "snapshot-pod-volume"
	// VeleroDataMoverRequester is the requester of the CSI data mover; its real source is
	// <namespace>/<claim>.
	VeleroDataMoverRequester = "snapshot-data-upload-download"
	veleroUploader           = "kopia"
	veleroDescription        = "Kopia Uploader"
	veleroPin                = "velero-pin"
)

// VeleroSource is the source path Velero gives the snapshot of realSource made for requester.
func VeleroSource(requester, realSource string) string {
	return requester + "/" + veleroUploader + "/" + realSource
}

// AsVelero returns o changed to write the snapshot as Velero writes it for requester: Velero's
// source path, description and pin, and its two tags next to o's own. The repository must be
// opened with Velero's identity (repository.VeleroIdentity).
func (o BackupOptions) AsVelero(requester, realSource string) BackupOptions {
	o.Source = VeleroSource(requester, realSource)
	tags := maps.Clone(o.Tags)
	if tags == nil {
		tags = map[string]string{}
	}
	tags[VeleroRequesterTag], tags[VeleroUploaderTag] = requester, veleroUploader
	o.Tags = tags
	o.Description, o.Pins = veleroDescription, []string{veleroPin}
	return o
}
