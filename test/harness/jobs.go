package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The simulated cluster has no Job controller and no kubelet. The harness plays both for the
// Jobs of the install namespace (ferry-server's repository maintenance): each Job gets a pod
// object, its one container runs as a local process of Ferry's binary of the same name (the
// work directory and termination message file moved into the cluster's directory), and the
// process's exit becomes the container's terminated state and the Job's Complete or Failed
// condition, as the kubelet and the Job controller would write them.

// serverDeployment is the Deployment object a real install makes for ferry-server: maintenance
// Jobs copy its pod. Nothing runs it here (StartServer starts the process).
func (c *Cluster) serverDeployment(ctx context.Context) error {
	labels := map[string]string{"app.kubernetes.io/name": "ferry-server"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: c.Install, Name: "ferry-server", Labels: labels},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](0), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
				AutomountServiceAccountToken: new(bool),
				Containers: []corev1.Container{{Name: "ferry-server", Image: "ferry.invalid/ferry:harness", Command: []string{"/ferry-server"},
					Args: []string{"--namespace=" + c.Install, "--work-dir=/var/cache/ferry"}}},
			}}},
	}
	return client.IgnoreAlreadyExists(c.Client.Create(ctx, dep))
}

// jobRunner runs the install namespace's Jobs until the cluster's test ends.
type jobRunner struct {
	c       *Cluster
	mu      sync.Mutex
	started map[string]bool
	running map[string]*exec.Cmd
	wg      sync.WaitGroup
}

func (c *Cluster) startJobRunner() {
	c.jobsOnce.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		if err := c.serverDeployment(ctx); err != nil {
			c.t.Fatalf("harness: the ferry-server Deployment: %v", err)
		}
		cs, err := kubernetes.NewForConfig(c.Env.Config)
		if err != nil {
			c.t.Fatal(err)
		}
		w, err := cs.BatchV1().Jobs(c.Install).Watch(ctx, metav1.ListOptions{})
		if err != nil {
			c.t.Fatalf("harness: watch jobs: %v", err)
		}
		c.jobs = &jobRunner{c: c, started: map[string]bool{}, running: map[string]*exec.Cmd{}}
		done := make(chan struct{})
		go func() {
			defer close(done)
			for ev := range w.ResultChan() {
				if j, ok := ev.Object.(*batchv1.Job); ok && ev.Type == watch.Added {
					c.jobs.start(ctx, j)
				}
			}
		}()
		c.t.Cleanup(func() {
			cancel()
			w.Stop()
			<-done
			c.jobs.KillAll()
			c.jobs.wg.Wait()
		})
	})
}

// KillJobs kills the processes of the Jobs that run now, as an OOM kill or a lost node would;
// it returns their names.
func (c *Cluster) KillJobs() []string {
	if c.jobs == nil {
		return nil
	}
	return c.jobs.KillAll()
}

func (r *jobRunner) KillAll() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var names []string
	for name, cmd := range r.running {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		names = append(names, name)
	}
	return names
}

func (r *jobRunner) start(ctx context.Context, j *batchv1.Job) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started[j.Name] || j.Status.CompletionTime != nil || len(j.Spec.Template.Spec.Containers) != 1 {
		return
	}
	r.started[j.Name] = true
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		if err := r.run(ctx, j); err != nil && ctx.Err() == nil {
			r.c.t.Errorf("harness: job %s: %v", j.Name, err)
		}
	}()
}

// run creates the Job's pod, runs its container as a process and records how it ended.
func (r *jobRunner) run(ctx context.Context, j *batchv1.Job) error {
	c := r.c
	spec := j.Spec.Template.Spec.DeepCopy()
	ctr := spec.Containers[0]
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: j.Namespace, Name: j.Name + "-run",
		Labels:          map[string]string{batchv1.JobNameLabel: j.Name, "job-name": j.Name},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: j.Name, UID: j.UID, Controller: ptr.To(true)}}},
		Spec: *spec}
	if err := c.Client.Create(ctx, pod); err != nil {
		return fmt.Errorf("create its pod: %w", err)
	}
	dir := filepath.Join(c.Dir, "jobs", j.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	termination := filepath.Join(dir, "termination-log")
	args := []string{}
	for _, a := range ctr.Args {
		if strings.HasPrefix(a, "--work-dir=") {
			a = "--work-dir=" + filepath.Join(dir, "work")
		}
		args = append(args, a)
	}
	args = append(args, "--kubeconfig="+c.Env.Kubeconfig, "--termination-log="+termination)
	logFile, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(filepath.Join(c.binDir, filepath.Base(ctr.Command[0])), args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	start := metav1.Now()
	r.mu.Lock()
	err = cmd.Start()
	if err == nil {
		r.running[j.Name] = cmd
	}
	r.mu.Unlock()
	if err != nil {
		return err
	}
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, StartTime: &start}
	if err := c.Client.Status().Update(ctx, pod); err != nil {
		return fmt.Errorf("its pod's status: %w", err)
	}
	waitErr := cmd.Wait()
	r.mu.Lock()
	delete(r.running, j.Name)
	r.mu.Unlock()

	terminated := &corev1.ContainerStateTerminated{StartedAt: start, FinishedAt: metav1.Now(), Reason: "Completed"}
	if msg, err := os.ReadFile(termination); err == nil {
		terminated.Message = string(msg)
	}
	var exit *exec.ExitError
	switch {
	case errors.As(waitErr, &exit) && exit.ExitCode() < 0: // killed by a signal
		terminated.ExitCode, terminated.Reason = 137, "OOMKilled"
	case errors.As(waitErr, &exit):
		terminated.ExitCode, terminated.Reason = int32(exit.ExitCode()), "Error"
	case waitErr != nil:
		return waitErr
	}
	pod.Status.Phase = corev1.PodSucceeded
	if terminated.ExitCode != 0 {
		pod.Status.Phase = corev1.PodFailed
	}
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: ctr.Name, Image: ctr.Image, State: corev1.ContainerState{Terminated: terminated}}}
	if err := c.Client.Status().Update(ctx, pod); err != nil {
		return fmt.Errorf("its pod's status: %w", err)
	}
	return r.finish(ctx, j, start, terminated.ExitCode == 0)
}

// finish writes the Job's end as the Job controller does.
func (r *jobRunner) finish(ctx context.Context, j *batchv1.Job, start metav1.Time, succeeded bool) error {
	fresh := &batchv1.Job{}
	if err := r.c.Client.Get(ctx, client.ObjectKeyFromObject(j), fresh); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	}
	now := metav1.Now()
	fresh.Status.StartTime = &start
	fresh.Status.Ready = ptr.To[int32](0)
	fresh.Status.Terminating = ptr.To[int32](0)
	if succeeded {
		fresh.Status.Succeeded = 1
		fresh.Status.CompletionTime = &now
		fresh.Status.Conditions = []batchv1.JobCondition{
			{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, LastTransitionTime: now, LastProbeTime: now},
			{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: now, LastProbeTime: now}}
	} else {
		fresh.Status.Failed = 1
		fresh.Status.Conditions = []batchv1.JobCondition{
			{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue, Reason: batchv1.JobReasonBackoffLimitExceeded,
				Message: "Job has reached the specified backoff limit", LastTransitionTime: now, LastProbeTime: now},
			{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: batchv1.JobReasonBackoffLimitExceeded,
				Message: "Job has reached the specified backoff limit", LastTransitionTime: now, LastProbeTime: now}}
	}
	if err := r.c.Client.Status().Update(ctx, fresh); err != nil {
		return fmt.Errorf("its status: %w", err)
	}
	return nil
}
