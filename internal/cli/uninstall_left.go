package cli

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/selection"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
)

// What is still there while `ferry uninstall` waits, each as one phrase that says what holds it.

// name is how kubectl names an object: kind.group "name".
func (u *uninstall) name(obj client.Object) string {
	gvk, err := apiutil.GVKForObject(obj, u.c.Scheme())
	if err != nil {
		return fmt.Sprintf("%T %q", obj, obj.GetName())
	}
	kind := strings.ToLower(gvk.Kind)
	if gvk.Group != "" {
		kind += "." + gvk.Group
	}
	return fmt.Sprintf("%s %q", kind, obj.GetName())
}

// leftover names an object still there, with its finalizers and anything else that holds it.
func (u *uninstall) leftover(obj client.Object, holds ...string) string {
	s := u.name(obj)
	if obj.GetNamespace() != "" {
		s += " in namespace " + obj.GetNamespace()
	}
	var state []string
	if obj.GetDeletionTimestamp() != nil {
		state = append(state, "terminating")
	}
	if f := obj.GetFinalizers(); len(f) > 0 {
		state = append(state, "finalizers: "+strings.Join(f, ", "))
	}
	if state = append(state, holds...); len(state) > 0 {
		s += " (" + strings.Join(state, "; ") + ")"
	}
	return s
}

// podsLeft lists the pods of ferry-server and the node-agents; the garbage collector deletes them
// after their Deployment and DaemonSet.
func (u *uninstall) podsLeft(ctx context.Context, _ bool) ([]string, error) {
	names, err := labels.NewRequirement("app.kubernetes.io/name", selection.In, []string{serverName, nodeAgentName})
	if err != nil {
		return nil, err
	}
	pods := &corev1.PodList{}
	if err := u.c.List(ctx, pods, client.InNamespace(u.Namespace), client.MatchingLabelsSelector{Selector: labels.NewSelector().Add(*names)}); err != nil {
		return nil, err
	}
	var left []string
	for i := range pods.Items {
		left = append(left, u.leftover(&pods.Items[i]))
	}
	return left, nil
}

// crdsLeft lists the CRDs not yet gone; with detail, also the objects with finalizers that keep them.
func (u *uninstall) crdsLeft(ctx context.Context, crds []client.Object, detail bool) ([]string, error) {
	ours := map[string]bool{}
	for _, c := range crds {
		ours[c.GetName()] = true
	}
	list := &apiextensionsv1.CustomResourceDefinitionList{}
	if err := u.c.List(ctx, list); err != nil {
		return nil, err
	}
	var left []string
	for i := range list.Items {
		have := &list.Items[i]
		if !ours[have.Name] {
			continue
		}
		var held []string
		if detail {
			var err error
			if held, err = u.heldObjects(ctx, have); err != nil {
				return nil, err
			}
		}
		left = append(left, u.leftover(have, held...))
	}
	return left, nil
}

// heldObjects names up to three objects of a CRD that finalizers keep, and how many more there are.
func (u *uninstall) heldObjects(ctx context.Context, crd *apiextensionsv1.CustomResourceDefinition) ([]string, error) {
	var version string
	for _, v := range crd.Spec.Versions {
		if v.Served {
			version = v.Name
			break
		}
	}
	gvk := schema.GroupVersionKind{Group: crd.Spec.Group, Version: version, Kind: crd.Spec.Names.Kind}
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
	if err := u.c.List(ctx, list); err != nil {
		return nil, client.IgnoreNotFound(err)
	}
	var held []string
	for i := range list.Items {
		if obj := &list.Items[i]; len(obj.Finalizers) > 0 {
			obj.SetGroupVersionKind(gvk)
			held = append(held, u.leftover(obj))
		}
	}
	if len(held) > 3 {
		held = append(held[:3], fmt.Sprintf("%d more", len(held)-3))
	}
	if len(held) > 0 {
		return []string{"held by " + strings.Join(held, ", ")}, nil
	}
	return nil, nil
}

// namespaceLeft names the namespace while it is there, with what the namespace controller says
// keeps it.
func (u *uninstall) namespaceLeft(ctx context.Context, _ bool) ([]string, error) {
	ns := &corev1.Namespace{}
	if err := u.c.Get(ctx, client.ObjectKey{Name: u.Namespace}, ns); err != nil {
		return nil, client.IgnoreNotFound(err)
	}
	var holds []string
	for _, f := range ns.Spec.Finalizers {
		holds = append(holds, "spec.finalizers: "+string(f))
	}
	for _, c := range ns.Status.Conditions {
		if c.Status == corev1.ConditionTrue && c.Message != "" {
			holds = append(holds, c.Message)
		}
	}
	return []string{u.leftover(ns, holds...)}, nil
}
