// Package testenv provides a real kube-apiserver and etcd with Ferry's CRDs installed (and, when
// asked, the CSI snapshot API), for tests that need an API server. One server is started per
// test binary (call Run or RunWith from TestMain).
package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/ferry-backup/ferry/config/crd"
	"github.com/ferry-backup/ferry/internal/scheme"
)

// Env is a running API server with Ferry's CRDs.
type Env struct {
	// Config connects to the API server as an administrator.
	Config *rest.Config
	// Client uses Ferry's scheme (core types, velero.io v1 and v2alpha1, apiextensions).
	Client client.Client
	// Kubeconfig is a kubeconfig file for the API server, for processes and kubectl.
	Kubeconfig string
}

var current *Env

// Run starts the API server, runs the tests, calls cleanups and stops it; use it as TestMain's
// body:
//
//	func TestMain(m *testing.M) { testenv.Run(m) }
func Run(m *testing.M, cleanups ...func()) { RunWith(m, Options{}, cleanups...) }

// Options choose what the API server serves besides Ferry's CRDs.
type Options struct {
	// SnapshotAPI installs the snapshot.storage.k8s.io/v1 CRDs (VolumeSnapshot,
	// VolumeSnapshotContent, VolumeSnapshotClass) of the external-snapshotter version in go.mod.
	SnapshotAPI bool
	// VeleroCRDs installs Ferry's CRDs shaped as Velero 1.18 installs its own: without the
	// status subresource and without selectable fields.
	VeleroCRDs bool
	// CRDs, when set, are installed instead of Ferry's (e.g. Velero's own, as its binary prints
	// them).
	CRDs []*apiextensionsv1.CustomResourceDefinition
}

// RunWith is Run with options.
func RunWith(m *testing.M, opts Options, cleanups ...func()) {
	code := run(m, opts)
	for _, c := range cleanups {
		c()
	}
	os.Exit(code)
}

func run(m *testing.M, opts Options) int {
	assets, err := assetsDir()
	if err != nil {
		fmt.Fprintln(os.Stderr, "testenv:", err)
		return 1
	}
	crds, err := crd.All()
	if err != nil {
		fmt.Fprintln(os.Stderr, "testenv: load CRDs:", err)
		return 1
	}
	if opts.VeleroCRDs {
		VeleroShaped(crds)
	}
	if opts.CRDs != nil {
		crds = opts.CRDs
	}
	var paths []string
	if opts.SnapshotAPI {
		if paths, err = snapshotCRDPaths(); err != nil {
			fmt.Fprintln(os.Stderr, "testenv: snapshot CRDs:", err)
			return 1
		}
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		CRDInstallOptions:        envtest.CRDInstallOptions{CRDs: crds, Paths: paths, ErrorIfPathMissing: true},
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "testenv: start API server:", err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "testenv: stop API server:", err)
		}
	}()
	current, err = newEnv(env, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testenv:", err)
		return 1
	}
	defer os.Remove(current.Kubeconfig)
	return m.Run()
}

func newEnv(env *envtest.Environment, cfg *rest.Config) (*Env, error) {
	s := scheme.New()
	if err := apiextensionsv1.AddToScheme(s); err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: s})
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	user, err := env.ControlPlane.AddUser(envtest.User{Name: "ferry-test-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, fmt.Errorf("add admin user: %w", err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	f, err := os.CreateTemp("", "ferry-testenv-*.kubeconfig")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := f.Write(kubeconfig); err != nil {
		return nil, err
	}
	return &Env{Config: cfg, Client: c, Kubeconfig: f.Name()}, nil
}

// VeleroShaped strips from CRDs what Velero 1.18's own CRDs lack: the status subresource (status
// is written through the object), selectable fields (the API server refuses field selectors on
// spec.node) and the checks of durations (Velero's say only "type: string", so any text is
// stored, e.g. "9999999999h").
func VeleroShaped(crds []*apiextensionsv1.CustomResourceDefinition) {
	for _, crd := range crds {
		for i := range crd.Spec.Versions {
			v := &crd.Spec.Versions[i]
			v.Subresources = nil
			v.SelectableFields = nil
			if v.Schema != nil && v.Schema.OpenAPIV3Schema != nil {
				uncheckDurations(v.Schema.OpenAPIV3Schema)
			}
		}
	}
}

// uncheckDurations removes the pattern, length and CEL rule of every duration in s.
func uncheckDurations(s *apiextensionsv1.JSONSchemaProps) {
	for _, rule := range s.XValidations {
		if strings.Contains(rule.Rule, "duration(self)") {
			s.XValidations, s.Pattern, s.MaxLength = nil, "", nil
			break
		}
	}
	for k, p := range s.Properties {
		uncheckDurations(&p)
		s.Properties[k] = p
	}
	if s.Items != nil && s.Items.Schema != nil {
		uncheckDurations(s.Items.Schema)
	}
	if s.AdditionalProperties != nil && s.AdditionalProperties.Schema != nil {
		uncheckDurations(s.AdditionalProperties.Schema)
	}
}

// Get returns the running environment; the test binary must call Run from TestMain.
func Get(t testing.TB) *Env {
	t.Helper()
	if current == nil {
		t.Fatal("testenv: no API server; call testenv.Run(m) from TestMain")
	}
	return current
}

// Context returns a context that ends with the test or after a minute, whichever is first.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// assetsDir finds kube-apiserver and etcd: $KUBEBUILDER_ASSETS when set, else the project's
// installer builds (once per machine) and reports them.
func assetsDir() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	script := filepath.Join(thisDir(), "..", "..", "hack", "install-control-plane.sh")
	cmd := exec.Command(script)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s: %w", script, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// thisDir is the directory of this package's source.
func thisDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}
