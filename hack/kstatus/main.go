// Command kstatus prints how sigs.k8s.io/cli-utils' kstatus (the library Flux and kubectl wait
// style tools use) judges one object read as JSON or YAML on stdin: its status (Current,
// InProgress, Failed, ...) and message, tab-separated.
package main

import (
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

func main() {
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "reading stdin:", err)
		os.Exit(2)
	}
	// Through JSON into Unstructured, which keeps integers as int64 (kstatus requires that).
	asJSON, err := yaml.YAMLToJSON(data)
	if err != nil {
		fmt.Fprintln(os.Stderr, "parsing object:", err)
		os.Exit(2)
	}
	object := &unstructured.Unstructured{}
	if err := object.UnmarshalJSON(asJSON); err != nil {
		fmt.Fprintln(os.Stderr, "parsing object:", err)
		os.Exit(2)
	}
	result, err := status.Compute(object)
	if err != nil {
		fmt.Fprintln(os.Stderr, "computing status:", err)
		os.Exit(2)
	}
	fmt.Printf("%s\t%s\n", result.Status, result.Message)
}
