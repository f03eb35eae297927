// Package datamover provides ferry-datamover, the process that runs in the per-operation mover
// pod of the CSI data mover path and moves one volume's data.
package datamover

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/pflag"
)

// ErrNotAvailable is returned by Run until the CSI data mover path is built.
var ErrNotAvailable = errors.New("the CSI data mover path is not available in this version of Ferry")

// Options configure one data movement.
type Options struct {
	// Namespace holds the DataUpload or DataDownload.
	Namespace string
	// DataUpload is the DataUpload to carry out (exclusive with DataDownload).
	DataUpload string
	// DataDownload is the DataDownload to carry out (exclusive with DataUpload).
	DataDownload string
	// VolumePath is where the mover pod mounts the volume.
	VolumePath string
}

// NewOptions returns the defaults.
func NewOptions() Options {
	return Options{Namespace: "velero", VolumePath: "/data"}
}

// AddFlags registers the mover's flags.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Namespace, "namespace", o.Namespace, "namespace of the DataUpload or DataDownload")
	fs.StringVar(&o.DataUpload, "data-upload", o.DataUpload, "name of the DataUpload to carry out")
	fs.StringVar(&o.DataDownload, "data-download", o.DataDownload, "name of the DataDownload to carry out")
	fs.StringVar(&o.VolumePath, "volume-path", o.VolumePath, "where the volume is mounted in this pod")
}

// Validate reports invalid settings, naming their flags.
func (o *Options) Validate() error {
	if (o.DataUpload == "") == (o.DataDownload == "") {
		return errors.New("exactly one of --data-upload and --data-download is required")
	}
	if o.Namespace == "" || o.VolumePath == "" {
		return errors.New("--namespace and --volume-path must not be empty")
	}
	return nil
}

// Run carries out the data movement.
func Run(_ context.Context, o Options) error {
	return fmt.Errorf("data mover for %s/%s%s: %w", o.Namespace, o.DataUpload, o.DataDownload, ErrNotAvailable)
}
