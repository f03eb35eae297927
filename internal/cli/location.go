package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
)

func newLocationCommand(o *Options) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "backup-location",
		Aliases: []string{"backup-locations", "bsl"},
		Short:   "Create, list and change backup storage locations",
	}
	cmd.AddCommand(newLocationCreateCommand(o), newLocationGetCommand(o), newLocationSetCommand(o))
	return cmd
}

func locationList() client.ObjectList { return &velerov1.BackupStorageLocationList{} }

// locationCreateOptions configure `ferry backup-location create`.
type locationCreateOptions struct {
	*Options
	Provider, Bucket, Prefix string
	Config                   map[string]string
	// Credential is one secret=key pair: the Secret and key holding the storage credentials.
	Credential map[string]string
	Default    bool
	AccessMode string
}

func newLocationCreateCommand(o *Options) *cobra.Command {
	lo := &locationCreateOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "create NAME --provider aws|filesystem --bucket BUCKET",
		Short: "Create a backup storage location",
		Long: "Creates a BackupStorageLocation: where backups are stored, one Kopia repository per location.\n" +
			"aws: any S3-compatible store (config: region, s3Url, insecureSkipTLSVerify, profile, stallTimeout;\n" +
			"the credential an AWS credentials file). filesystem: a directory every Ferry pod reaches (config: path;\n" +
			"the bucket is a directory below it). ferry-server then checks it and reports it Available or\n" +
			"Unavailable (ferry backup-location get).",
		Example: "  ferry backup-location create default --provider aws --bucket backups --prefix ferry \\\n" +
			"    --config region=us-east-1,s3Url=http://minio.minio:9000 \\\n" +
			"    --credential cloud-credentials=cloud --default",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			bsl, err := lo.location(args[0])
			if err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			return lo.run(cmd.Context(), c, bsl)
		},
	}
	f := cmd.Flags()
	f.StringVar(&lo.Provider, "provider", "", "storage provider: aws (S3-compatible) or filesystem (required)")
	f.StringVar(&lo.Bucket, "bucket", "", "bucket (filesystem: a directory below config path) (required)")
	f.StringVar(&lo.Prefix, "prefix", "", "path inside the bucket under which Ferry stores its data")
	f.StringToStringVar(&lo.Config, "config", nil, "provider settings, key=value,...")
	f.StringToStringVar(&lo.Credential, "credential", nil, "Secret and key in Ferry's namespace holding the credentials: secret=key")
	f.BoolVar(&lo.Default, "default", false, "make this the location of backups that name none")
	f.StringVar(&lo.AccessMode, "access-mode", string(velerov1.BackupStorageLocationAccessModeReadWrite), "ReadWrite or ReadOnly")
	_ = cmd.MarkFlagRequired("provider")
	_ = cmd.MarkFlagRequired("bucket")
	_ = cmd.RegisterFlagCompletionFunc("provider", cobra.FixedCompletions([]string{velerov1.ProviderAWS, velerov1.ProviderFilesystem}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func (lo *locationCreateOptions) location(name string) (*velerov1.BackupStorageLocation, error) {
	switch lo.Provider {
	case velerov1.ProviderAWS, "velero.io/aws", velerov1.ProviderFilesystem:
	default:
		return nil, fmt.Errorf("--provider %q: want aws or filesystem", lo.Provider)
	}
	if lo.Bucket == "" {
		return nil, fmt.Errorf("--bucket: name the bucket (filesystem: a directory below config path)")
	}
	mode := velerov1.BackupStorageLocationAccessMode(lo.AccessMode)
	if mode != velerov1.BackupStorageLocationAccessModeReadWrite && mode != velerov1.BackupStorageLocationAccessModeReadOnly {
		return nil, fmt.Errorf("--access-mode %q: want ReadWrite or ReadOnly", lo.AccessMode)
	}
	cred, err := credential(lo.Credential)
	if err != nil {
		return nil, err
	}
	return &velerov1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: lo.Namespace, Name: name},
		Spec: velerov1.BackupStorageLocationSpec{Provider: lo.Provider, Config: lo.Config, Credential: cred, Default: lo.Default,
			AccessMode:  mode,
			StorageType: velerov1.StorageType{ObjectStorage: &velerov1.ObjectStorageLocation{Bucket: lo.Bucket, Prefix: lo.Prefix}}}}, nil
}

// credential reads --credential secret=key.
func credential(m map[string]string) (*corev1.SecretKeySelector, error) {
	if len(m) == 0 {
		return nil, nil
	}
	if len(m) > 1 {
		return nil, fmt.Errorf("--credential: want one secret=key pair, got %d", len(m))
	}
	for secret, key := range m {
		if secret == "" || key == "" {
			return nil, fmt.Errorf("--credential %s=%s: want secret=key", secret, key)
		}
		return &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: key}, nil
	}
	return nil, nil
}

func (lo *locationCreateOptions) run(ctx context.Context, c client.Client, bsl *velerov1.BackupStorageLocation) error {
	if bsl.Spec.Default {
		if other, err := defaultLocation(ctx, c, lo.Namespace); err != nil {
			return err
		} else if other != "" {
			return fmt.Errorf("--default: %s is already the default location; nothing was created "+
				"(create this one without --default, then: ferry backup-location set %s --default)", other, bsl.Name)
		}
	}
	if err := c.Create(ctx, bsl); err != nil {
		return fmt.Errorf("create backup storage location %s/%s: %w", bsl.Namespace, bsl.Name, err)
	}
	_, err := fmt.Fprintf(lo.Out, "Backup storage location %s created; ferry-server checks it now (ferry backup-location get %s)\n", bsl.Name, bsl.Name)
	return err
}

// defaultLocation names the default location of ns, or "".
func defaultLocation(ctx context.Context, c client.Client, ns string) (string, error) {
	list := &velerov1.BackupStorageLocationList{}
	if err := c.List(ctx, list, client.InNamespace(ns)); err != nil {
		return "", fmt.Errorf("list backup storage locations in namespace %s: %w", ns, err)
	}
	for _, l := range list.Items {
		if l.Spec.Default {
			return l.Name, nil
		}
	}
	return "", nil
}

func newLocationGetCommand(o *Options) *cobra.Command {
	return getCommand[velerov1.BackupStorageLocation, *velerov1.BackupStorageLocation]{kind: "backup storage location",
		short: "List backup storage locations, or show the named ones", newList: locationList,
		items: func(l client.ObjectList) *[]velerov1.BackupStorageLocation {
			return &l.(*velerov1.BackupStorageLocationList).Items
		},
		table: locationTable}.command(o)
}

func locationTable(items []velerov1.BackupStorageLocation, wide bool, now time.Time) table {
	t := table{header: []string{"NAME", "PROVIDER", "BUCKET/PREFIX", "PHASE", "LAST VALIDATED", "ACCESS MODE", "DEFAULT"}}
	if wide {
		t.header = append(t.header, "CREDENTIAL", "MESSAGE")
	}
	for _, l := range items {
		where := ""
		if s := l.Spec.ObjectStorage; s != nil {
			where = strings.TrimSuffix(s.Bucket+"/"+s.Prefix, "/")
		}
		validated := "<never>"
		if v := l.Status.LastValidationTime; v != nil {
			validated = age(*v, now) + " ago"
		}
		def := ""
		if l.Spec.Default {
			def = "true"
		}
		row := []string{l.Name, l.Spec.Provider, where, orDefault(string(l.Status.Phase), "Unknown"), validated,
			orDefault(string(l.Spec.AccessMode), string(velerov1.BackupStorageLocationAccessModeReadWrite)), def}
		if wide {
			cred := "<none>"
			if c := l.Spec.Credential; c != nil {
				cred = c.Name + "=" + c.Key
			}
			row = append(row, cred, orNone(l.Status.Message))
		}
		t.rows = append(t.rows, row)
	}
	return t
}
