package operation_test

import (
	"context"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/ferry-backup/ferry/internal/operation"
	"github.com/ferry-backup/ferry/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Run(m) }

// Velero installs its CRDs without a status subresource; PatchStatus must still write status
// there, and must keep using the subresource where there is one.
func TestPatchStatusWithAndWithoutTheSubresource(t *testing.T) {
	env := testenv.Get(t)
	ctx := testenv.Context(t)
	for _, withSubresource := range []bool{false, true} {
		plural := "plainwidgets"
		if withSubresource {
			plural = "statuswidgets"
		}
		crd := widgetCRD(plural, withSubresource)
		if _, err := envtest.InstallCRDs(env.Config, envtest.CRDInstallOptions{CRDs: []*apiextensionsv1.CustomResourceDefinition{crd}}); err != nil {
			t.Fatal(err)
		}
		obj := &unstructured.Unstructured{}
		obj.SetAPIVersion("test.ferry.dev/v1")
		obj.SetKind(crd.Spec.Names.Kind)
		obj.SetNamespace("default")
		obj.SetName("w1")
		_ = wait.PollUntilContextTimeout(ctx, 50e6, 30e9, true, func(ctx context.Context) (bool, error) {
			return env.Client.Create(ctx, obj) == nil, nil // the new type is served shortly after install
		})
		if err := operation.PatchStatus(ctx, env.Client, obj, map[string]any{"phase": "InProgress"}); err != nil {
			t.Fatalf("subresource %v: %v", withSubresource, err)
		}
		got := &unstructured.Unstructured{}
		got.SetGroupVersionKind(obj.GroupVersionKind())
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(obj), got); err != nil {
			t.Fatal(err)
		}
		if phase, _, _ := unstructured.NestedString(got.Object, "status", "phase"); phase != "InProgress" {
			t.Errorf("subresource %v: status.phase = %q", withSubresource, phase)
		}
	}
}

// The node-agent may patch only the status of its operations. When one is deleted meanwhile,
// PatchStatus must say NotFound (the reconciler then ignores it), not the Forbidden of its
// second try through the object itself.
func TestPatchStatusOfAGoneObjectWithStatusOnlyAccess(t *testing.T) {
	env := testenv.Get(t)
	ctx := testenv.Context(t)
	crd := widgetCRD("statuswidgets", true)
	if _, err := envtest.InstallCRDs(env.Config, envtest.CRDInstallOptions{CRDs: []*apiextensionsv1.CustomResourceDefinition{crd}}); err != nil {
		t.Fatal(err)
	}
	const user = "status-writer"
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: user}, Rules: []rbacv1.PolicyRule{{
		APIGroups: []string{"test.ferry.dev"}, Resources: []string{"statuswidgets/status"}, Verbs: []string{"patch"}}}}
	binding := &rbacv1.RoleBinding{ObjectMeta: role.ObjectMeta, Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, Name: user}},
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: user}}
	for _, obj := range []client.Object{role, binding} {
		if err := env.Client.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	gone := &unstructured.Unstructured{}
	gone.SetAPIVersion("test.ferry.dev/v1")
	gone.SetKind("StatusWidget")
	gone.SetNamespace("default")
	gone.SetName("never-created")
	list := &unstructured.UnstructuredList{}
	list.SetAPIVersion("test.ferry.dev/v1")
	list.SetKind("StatusWidgetList")
	_ = wait.PollUntilContextTimeout(ctx, 50e6, 30e9, true, func(ctx context.Context) (bool, error) {
		return env.Client.List(ctx, list) == nil, nil // the new type is served shortly after install
	})
	if err := operation.PatchStatus(ctx, c, gone, map[string]any{"phase": "InProgress"}); !apierrors.IsNotFound(err) {
		t.Errorf("PatchStatus of a missing object with status-only access = %v, want NotFound", err)
	}
}

func widgetCRD(plural string, withSubresource bool) *apiextensionsv1.CustomResourceDefinition {
	kind := map[string]string{"plainwidgets": "PlainWidget", "statuswidgets": "StatusWidget"}[plural]
	preserve := true
	v := apiextensionsv1.CustomResourceDefinitionVersion{Name: "v1", Served: true, Storage: true,
		Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
			Type: "object", XPreserveUnknownFields: &preserve}}}
	if withSubresource {
		v.Subresources = &apiextensionsv1.CustomResourceSubresources{Status: &apiextensionsv1.CustomResourceSubresourceStatus{}}
	}
	return &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: plural + ".test.ferry.dev"},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{Group: "test.ferry.dev", Scope: apiextensionsv1.NamespaceScoped,
			Names:    apiextensionsv1.CustomResourceDefinitionNames{Plural: plural, Kind: kind, ListKind: kind + "List", Singular: plural[:len(plural)-1]},
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{v}},
	}
}
