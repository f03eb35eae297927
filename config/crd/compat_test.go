package crd_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/ferry-backup/ferry/internal/scheme"
	"github.com/ferry-backup/ferry/internal/testenv"
)

// The objects in testdata/velero are shaped like those a Velero server writes, including fields
// Ferry does not use. They must survive Ferry's Go types and Ferry's CRD schemas unchanged.

func veleroFixtures(t *testing.T) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob("testdata/velero/*.yaml")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	out := map[string][]byte{}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(p)] = data
	}
	return out
}

// TestVeleroObjectsDecodeWithoutLoss decodes each object into Ferry's Go type and encodes it
// again: every field of the original must come back.
func TestVeleroObjectsDecodeWithoutLoss(t *testing.T) {
	decoder := serializer.NewCodecFactory(scheme.New()).UniversalDeserializer()
	for name, data := range veleroFixtures(t) {
		t.Run(name, func(t *testing.T) {
			obj, gvk, err := decoder.Decode(data, nil, nil)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if reflect.TypeOf(obj).Elem().PkgPath() == "k8s.io/apimachinery/pkg/apis/meta/v1/unstructured" {
				t.Fatalf("%s decoded as unstructured", gvk)
			}
			obj.GetObjectKind().SetGroupVersionKind(*gvk)
			encoded, err := json.Marshal(obj)
			if err != nil {
				t.Fatal(err)
			}
			want, got := normalized(t, data), normalized(t, encoded)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("re-encoding %s lost or changed fields (-velero +ferry):\n%s", gvk.Kind, diff)
			}
		})
	}
}

// TestVeleroObjectsSurviveTheAPIServer stores each object through the API server (status through
// the status subresource) and reads it back: the CRD schemas must not prune or reject anything.
func TestVeleroObjectsSurviveTheAPIServer(t *testing.T) {
	env := testenv.Get(t)
	ctx := testenv.Context(t)
	for name, data := range veleroFixtures(t) {
		t.Run(name, func(t *testing.T) {
			ns := newNamespace(t)
			obj := &unstructured.Unstructured{}
			if err := yaml.Unmarshal(data, &obj.Object); err != nil {
				t.Fatal(err)
			}
			status := obj.Object["status"]
			obj.SetNamespace(ns)
			if err := env.Client.Create(ctx, obj); err != nil {
				t.Fatalf("create: %v", err)
			}
			obj.Object["status"] = status
			if err := env.Client.Status().Update(ctx, obj); err != nil {
				t.Fatalf("update status: %v", err)
			}
			got := &unstructured.Unstructured{}
			got.SetGroupVersionKind(obj.GroupVersionKind())
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(obj), got); err != nil {
				t.Fatal(err)
			}
			orig := map[string]any{}
			if err := yaml.Unmarshal(data, &orig); err != nil {
				t.Fatal(err)
			}
			for _, part := range []string{"spec", "status"} {
				if diff := cmp.Diff(normalizeValue(orig[part]), normalizeValue(got.Object[part])); diff != "" {
					t.Errorf("%s changed by the API server (-velero +stored):\n%s", part, diff)
				}
			}
		})
	}
}

// normalized decodes YAML or JSON into generic values without fields that only hold zero values
// (null, "", "0s", false, 0, {} or []): Velero and Ferry both omit those, and an absent field means
// the same. Metadata the encoder adds (creationTimestamp: null) is dropped the same way.
func normalized(t *testing.T, data []byte) any {
	t.Helper()
	var v map[string]any
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	return normalizeValue(v)
}

func normalizeValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			if n := normalizeValue(e); n != nil {
				out[k] = n
			}
		}
		if len(out) == 0 {
			return nil
		}
		return out
	case []any:
		out := make([]any, 0, len(x))
		for _, e := range x {
			out = append(out, normalizeValue(e))
		}
		if len(out) == 0 {
			return nil
		}
		return out
	case string:
		if x == "" || x == "0s" { // "0s" is how a zero duration encodes
			return nil
		}
	case bool:
		if !x {
			return nil
		}
	case float64:
		if x == 0 {
			return nil
		}
	case int64:
		if x == 0 {
			return nil
		}
		return float64(x)
	}
	return v
}
