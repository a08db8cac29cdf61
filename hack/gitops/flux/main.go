// Command flux-ssa does to a directory of manifests what Flux's kustomize-controller does to the
// files of a git revision, with the same engine, github.com/fluxcd/pkg/ssa: a staged server-side
// apply under the field manager kustomize-controller with the controller's own apply, cleanup and
// prune options, an inventory of what was applied (kept in a file where the controller keeps it in
// the Kustomization's status), garbage collection of what left the directory, and a kstatus wait
// for everything applied (spec.wait: true). Options are copied from kustomize-controller's
// internal/controller/kustomization_controller.go (apply, deleteObjects). It does not build
// kustomize overlays: the directory holds plain YAML, as a Kustomization without a
// kustomization.yaml is built from all the files in its path.
//
//	flux-ssa reconcile -path DIR -inventory FILE [-name NAME] [-timeout 60s]
//	    one reconciliation; prints one JSON object {"changes": [...], "pruned": [...]};
//	    exit 1 with the error (as kustomize-controller puts it in Ready=False) on stderr
//	flux-ssa drift -path DIR [-name NAME] [-interval 1s]
//	    the controller's periodic reconciliation, over and over until stdin is closed: each round
//	    asks ssa's Diff (server-side dry run, no write, as `flux diff kustomization`) and then
//	    ApplyAllStaged (which re-applies what drifted) for every object; prints one JSON line per
//	    round {"round": N, "drifted": [...], "applied": [...]} naming each object found different
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/polling"
	"github.com/fluxcd/cli-utils/pkg/object"
	"github.com/fluxcd/pkg/ssa"
	"github.com/fluxcd/pkg/ssa/normalize"
	ssautil "github.com/fluxcd/pkg/ssa/utils"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const (
	controllerName = "kustomize-controller"        // its field manager
	group          = "kustomize.toolkit.fluxcd.io" // its owner labels' prefix
	namespace      = "flux-system"                 // where the Kustomization would live
)

func main() {
	if len(os.Args) < 2 {
		fail(2, "usage: flux-ssa reconcile|drift -path DIR ...")
	}
	flags := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	path := flags.String("path", "", "directory standing in for the git revision")
	name := flags.String("name", "tenantry", "name of the Kustomization (owner labels)")
	inventoryFile := flags.String("inventory", "", "file holding the inventory between reconciliations")
	timeout := flags.Duration("timeout", 60*time.Second, "spec.timeout: apply and health-check deadline")
	interval := flags.Duration("interval", time.Second, "drift: pause between rounds")
	_ = flags.Parse(os.Args[2:])
	if *path == "" {
		fail(2, "-path is required")
	}

	manager, err := newManager()
	if err != nil {
		fail(2, "%v", err)
	}
	ctx := context.Background()
	switch os.Args[1] {
	case "reconcile":
		if *inventoryFile == "" {
			fail(2, "-inventory is required")
		}
		result, err := reconcile(ctx, manager, *path, *name, *inventoryFile, *timeout)
		out, _ := json.Marshal(result)
		fmt.Println(string(out))
		if err != nil {
			fail(1, "%v", err)
		}
	case "drift":
		if err := drift(ctx, manager, *path, *name, *interval); err != nil {
			fail(1, "%v", err)
		}
	default:
		fail(2, "unknown command %q", os.Args[1])
	}
}

func fail(code int, format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(code)
}

// newManager: the controller's ResourceManager on the KUBECONFIG cluster, with the default
// kstatus readers (kustomize-controller adds a Job reader and CEL health checks; neither applies).
func newManager() (*ssa.ResourceManager, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	config, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	kube, err := client.New(config, client.Options{})
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	poller := polling.NewStatusPoller(kube, kube.RESTMapper(), polling.Options{})
	manager := ssa.NewResourceManager(kube, poller, ssa.Owner{Field: controllerName, Group: group})
	manager.SetConcurrency(4) // --concurrent-ssa default
	return manager, nil
}

// build reads every YAML file of the directory, as the controller's build of a path without a
// kustomization.yaml does, normalized and labelled as the controller does before applying.
func build(manager *ssa.ResourceManager, dir, name string) ([]*unstructured.Unstructured, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var objects []*unstructured.Unstructured
	for _, file := range files {
		f, err := os.Open(file)
		if err != nil {
			return nil, err
		}
		read, err := ssautil.ReadObjects(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		objects = append(objects, read...)
	}
	manager.SetOwnerLabels(objects, name, namespace)
	if err := normalize.UnstructuredList(objects); err != nil {
		return nil, err
	}
	return objects, nil
}

// applyOptions: kustomize-controller's, for a Kustomization with force: false and no ignore rules.
func applyOptions(timeout time.Duration) ssa.ApplyOptions {
	opts := ssa.DefaultApplyOptions()
	opts.Force = false
	opts.WaitTimeout = timeout
	opts.ExclusionSelector = map[string]string{group + "/reconcile": "disabled", group + "/ssa": "Ignore"}
	opts.IfNotPresentSelector = map[string]string{group + "/ssa": "IfNotPresent"}
	opts.ForceSelector = map[string]string{group + "/force": "enabled"}
	opts.Cleanup = ssa.ApplyCleanupOptions{
		Annotations: []string{corev1.LastAppliedConfigAnnotation, group + "/checksum", "fluxcd.io/sync-checksum"},
		Labels:      []string{"fluxcd.io/sync-gc-mark"},
		FieldManagers: []ssa.FieldManager{
			{Name: "kubectl", OperationType: metav1.ManagedFieldsOperationApply},
			{Name: "kubectl", OperationType: metav1.ManagedFieldsOperationUpdate},
			{Name: "before-first-apply", OperationType: metav1.ManagedFieldsOperationUpdate},
			{Name: controllerName, OperationType: metav1.ManagedFieldsOperationUpdate},
		},
		Exclusions: map[string]string{group + "/ssa": "Merge"},
	}
	return opts
}

// deleteOptions: the controller's prune (deleteObjects): background propagation, only objects
// carrying this Kustomization's owner labels.
func deleteOptions(manager *ssa.ResourceManager, name string) ssa.DeleteOptions {
	return ssa.DeleteOptions{
		PropagationPolicy: metav1.DeletePropagationBackground,
		Inclusions:        manager.GetOwnerLabels(name, namespace),
		Exclusions: map[string]string{
			group + "/prune": "disabled", group + "/reconcile": "disabled", group + "/ssa": "Ignore",
		},
	}
}

type change struct {
	Subject string `json:"subject"`
	Action  string `json:"action"`
}

type reconcileResult struct {
	Changes []change `json:"changes"`
	Pruned  []change `json:"pruned"`
}

func changes(set *ssa.ChangeSet) []change {
	out := []change{}
	if set == nil {
		return out
	}
	for _, e := range set.Entries {
		out = append(out, change{Subject: e.Subject, Action: string(e.Action)})
	}
	return out
}

// inventoryEntry is the controller's status.inventory entry: the object's id and API version.
// (ChangeSetEntry.GroupVersion holds the version only.)
type inventoryEntry struct {
	ID      string `json:"id"`
	Version string `json:"v"`
}

func readInventory(file string) ([]inventoryEntry, error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var entries []inventoryEntry
	return entries, json.Unmarshal(data, &entries)
}

// stale: what the old inventory has and the new one lacks, as objects to delete.
func stale(old, current []inventoryEntry) ([]*unstructured.Unstructured, error) {
	keep := map[string]bool{}
	for _, e := range current {
		keep[e.ID] = true
	}
	var out []*unstructured.Unstructured
	for _, e := range old {
		if keep[e.ID] {
			continue
		}
		id, err := object.ParseObjMetadata(e.ID)
		if err != nil {
			return nil, err
		}
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(schema.GroupVersionKind{Group: id.GroupKind.Group, Version: e.Version, Kind: id.GroupKind.Kind})
		u.SetName(id.Name)
		u.SetNamespace(id.Namespace)
		out = append(out, u)
	}
	return out, nil
}

// reconcile: build, ApplyAllStaged, inventory, prune, health check, in the controller's order.
func reconcile(ctx context.Context, manager *ssa.ResourceManager, dir, name, inventoryFile string,
	timeout time.Duration) (reconcileResult, error) {
	result := reconcileResult{Changes: []change{}, Pruned: []change{}}
	objects, err := build(manager, dir, name)
	if err != nil {
		return result, fmt.Errorf("build failed: %w", err)
	}
	old, err := readInventory(inventoryFile)
	if err != nil {
		return result, err
	}
	applied, err := manager.ApplyAllStaged(ctx, objects, applyOptions(timeout))
	result.Changes = changes(applied)
	if err != nil {
		return result, err // the inventory is kept as it was, as the controller does
	}
	current := []inventoryEntry{}
	for _, e := range applied.Entries {
		current = append(current, inventoryEntry{ID: e.ObjMetadata.String(), Version: e.GroupVersion})
	}
	toDelete, err := stale(old, current)
	if err != nil {
		return result, err
	}
	pruned, err := manager.DeleteAll(ctx, toDelete, deleteOptions(manager, name))
	result.Pruned = changes(pruned)
	if err != nil {
		return result, fmt.Errorf("prune failed: %w", err)
	}
	data, _ := json.Marshal(current)
	if err := os.WriteFile(inventoryFile, data, 0o644); err != nil {
		return result, err
	}
	// checkHealth with spec.wait: every applied object Current (kstatus), or the timeout; polled
	// every second where the controller polls every 5 s, to keep the test short.
	if err := manager.WaitForSetWithContext(ctx, applied.ToObjMetadataSet(), ssa.WaitOptions{
		Interval: time.Second, Timeout: timeout, FailFast: true,
	}); err != nil {
		return result, fmt.Errorf("health check failed: %w", err)
	}
	return result, nil
}

type driftedObject struct {
	Subject string `json:"subject"`
	Live    any    `json:"live"`
	DryRun  any    `json:"dryRun"`
}

type round struct {
	Round   int             `json:"round"`
	At      string          `json:"at"`
	Objects int             `json:"objects"`
	Drifted []driftedObject `json:"drifted"`
	Applied []change        `json:"applied"`
}

// drift runs rounds until stdin reaches EOF; the last round starts after it.
func drift(ctx context.Context, manager *ssa.ResourceManager, dir, name string, interval time.Duration) error {
	stop := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(stop) }()
	for n := 1; ; n++ {
		stopping := false
		select {
		case <-stop:
			stopping = true
		default:
		}
		r, err := driftRound(ctx, manager, dir, name, n)
		if err != nil {
			return fmt.Errorf("round %d: %w", n, err)
		}
		line, _ := json.Marshal(r)
		fmt.Println(string(line))
		if stopping {
			return nil
		}
		select {
		case <-stop:
		case <-time.After(interval):
		}
	}
}

func driftRound(ctx context.Context, manager *ssa.ResourceManager, dir, name string, n int) (round, error) {
	r := round{Round: n, At: time.Now().UTC().Format(time.RFC3339Nano), Drifted: []driftedObject{}}
	objects, err := build(manager, dir, name)
	if err != nil {
		return r, err
	}
	r.Objects = len(objects)
	for _, o := range objects {
		entry, live, dryRun, err := manager.Diff(ctx, o.DeepCopy(), ssa.DiffOptions{Exclusions: applyOptions(0).ExclusionSelector})
		if err != nil {
			return r, err
		}
		if entry.Action != ssa.UnchangedAction && entry.Action != ssa.SkippedAction {
			d := driftedObject{Subject: entry.Subject}
			if live != nil && dryRun != nil {
				d.Live, d.DryRun = live.Object, dryRun.Object
			}
			r.Drifted = append(r.Drifted, d)
		}
	}
	applied, err := manager.ApplyAllStaged(ctx, objects, applyOptions(60*time.Second))
	if err != nil {
		return r, err
	}
	r.Applied = []change{}
	for _, c := range changes(applied) {
		if c.Action != string(ssa.UnchangedAction) {
			r.Applied = append(r.Applied, c)
		}
	}
	return r, nil
}
