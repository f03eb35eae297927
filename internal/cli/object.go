package cli

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// get reads one object of Ferry's namespace; kind names it in errors, and a missing object gets
// an error that says so plainly.
func (o *Options) get(ctx context.Context, c client.Client, kind, name string, obj client.Object) error {
	err := c.Get(ctx, client.ObjectKey{Namespace: o.Namespace, Name: name}, obj)
	if apierrors.IsNotFound(err) {
		return &notFoundError{kind: kind, name: name, namespace: o.Namespace, err: err}
	}
	if err != nil {
		return fmt.Errorf("get %s %s/%s: %w", kind, o.Namespace, name, err)
	}
	return nil
}

// notFoundError says plainly that an object is missing; it unwraps to the API's error.
type notFoundError struct {
	kind, name, namespace string
	err                   error
}

func (e *notFoundError) Error() string {
	return fmt.Sprintf("%s %q not found in namespace %s", e.kind, e.name, e.namespace)
}

func (e *notFoundError) Unwrap() error { return e.err }
