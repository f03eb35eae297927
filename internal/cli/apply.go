package cli

import (
	"context"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
)

// fieldManager owns, through server-side apply, exactly the fields `ferry install` sets. Fields
// set by anyone else (an annotation, a nodeSelector, an extra env var) are left alone.
const fieldManager = "ferry-install"

// applyConfiguration turns a typed object into what `ferry install` applies: its kind set, its
// status dropped and its null fields (an empty creationTimestamp, rules of a role with none)
// left out, so that install owns only the fields it really sets.
func applyConfiguration(obj client.Object, s *runtime.Scheme) (*unstructured.Unstructured, error) {
	gvk, err := apiutil.GVKForObject(obj, s)
	if err != nil {
		return nil, err
	}
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	delete(content, "status")
	u := &unstructured.Unstructured{Object: dropNulls(content)}
	u.SetGroupVersionKind(gvk)
	return u, nil
}

func dropNulls(m map[string]any) map[string]any {
	for k, v := range m {
		switch v := v.(type) {
		case nil:
			delete(m, k)
		case map[string]any:
			dropNulls(v)
		case []any:
			for _, item := range v {
				if item, ok := item.(map[string]any); ok {
					dropNulls(item)
				}
			}
		}
	}
	return m
}

// apply makes the fields `ferry install` sets as wanted, taking them over from any other manager;
// a run that changes nothing writes nothing, so no Deployment or DaemonSet rolls.
func apply(ctx context.Context, c client.Client, obj client.Object) error {
	u, err := applyConfiguration(obj, c.Scheme())
	if err != nil {
		return err
	}
	return c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(fieldManager), client.ForceOwnership)
}
