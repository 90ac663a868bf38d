// Package firecracker runs sandboxes as Firecracker microVMs: the VMM is
// launched inside the sandbox's network namespace and a private mount
// namespace, and configured through its API socket (machine-config,
// boot-source, drives, network-interfaces, mmds, actions), paused into
// Full and then Diff snapshots kept as a generational memory chain, and
// resumed with that memory served lazily by the agent's userfaultfd page
// server. The request
// bodies follow Firecracker's API (reference/firecracker/firecracker-api.yaml,
// version 1.17), which the tests validate them against.
//
// What has run: every request body, validated against that spec; the
// template and clone file handling with real memory chains; and, in their
// own packages, the userfaultfd page server (a test process plays
// Firecracker), the network slots and the cgroups. What has not: no
// Firecracker process has ever booted a guest for Wrenn, since the machines
// Wrenn is developed and tested on have neither a firecracker binary nor a
// KVM that runs standard guests. TestAgentFirecracker (tests/e2e) runs it
// end to end where both exist and skips elsewhere, and the agent's
// --runtime auto never picks this driver: it runs only when named.
package firecracker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// MachineConfiguration is PUT /machine-config.
type MachineConfiguration struct {
	VcpuCount       int   `json:"vcpu_count"`
	MemSizeMib      int   `json:"mem_size_mib"`
	Smt             *bool `json:"smt,omitempty"`
	TrackDirtyPages bool  `json:"track_dirty_pages"`
}

// BootSource is PUT /boot-source.
type BootSource struct {
	KernelImagePath string `json:"kernel_image_path"`
	InitrdPath      string `json:"initrd_path,omitempty"`
	BootArgs        string `json:"boot_args,omitempty"`
}

// Drive is PUT /drives/{drive_id}.
type Drive struct {
	DriveID      string `json:"drive_id"`
	PathOnHost   string `json:"path_on_host"`
	IsRootDevice bool   `json:"is_root_device"`
	IsReadOnly   bool   `json:"is_read_only"`
	CacheType    string `json:"cache_type,omitempty"`
	IoEngine     string `json:"io_engine,omitempty"`
}

// NetworkInterface is PUT /network-interfaces/{iface_id}.
type NetworkInterface struct {
	IfaceID     string `json:"iface_id"`
	HostDevName string `json:"host_dev_name"`
	GuestMac    string `json:"guest_mac,omitempty"`
}

// MmdsConfig is PUT /mmds/config.
type MmdsConfig struct {
	Version           string   `json:"version"`
	NetworkInterfaces []string `json:"network_interfaces"`
	IPv4Address       string   `json:"ipv4_address,omitempty"`
}

// InstanceActionInfo is PUT /actions.
type InstanceActionInfo struct {
	ActionType string `json:"action_type"`
}

// VM is PATCH /vm.
type VM struct {
	State string `json:"state"`
}

// SnapshotCreateParams is PUT /snapshot/create.
type SnapshotCreateParams struct {
	MemFilePath  string `json:"mem_file_path"`
	SnapshotPath string `json:"snapshot_path"`
	SnapshotType string `json:"snapshot_type,omitempty"`
}

// MemoryBackend is where a restored guest's memory comes from.
type MemoryBackend struct {
	BackendType string `json:"backend_type"`
	BackendPath string `json:"backend_path"`
}

// SnapshotLoadParams is PUT /snapshot/load.
type SnapshotLoadParams struct {
	SnapshotPath    string         `json:"snapshot_path"`
	MemBackend      *MemoryBackend `json:"mem_backend,omitempty"`
	TrackDirtyPages bool           `json:"track_dirty_pages"`
	ResumeVM        bool           `json:"resume_vm"`
}

// SnapshotCalls pause the guest and write its state and memory: all of
// it (Full) on the first pause, the pages written since the last snapshot
// (Diff, from dirty-page tracking) after that.
func SnapshotCalls(vmstate, memFile string, full bool) []Call {
	kind := "Diff"
	if full {
		kind = "Full"
	}
	return []Call{
		{http.MethodPatch, "/vm", VM{State: "Paused"}},
		{http.MethodPut, "/snapshot/create", SnapshotCreateParams{MemFilePath: memFile, SnapshotPath: vmstate, SnapshotType: kind}},
	}
}

// ResumeCall lets a paused guest run again (after a failed snapshot).
func ResumeCall() Call { return Call{http.MethodPatch, "/vm", VM{State: "Resumed"}} }

// LoadCall restores a snapshot whose memory the page server at uffdSocket
// serves, keeps tracking dirty pages for the next Diff, and runs it.
func LoadCall(vmstate, uffdSocket string) Call {
	return Call{http.MethodPut, "/snapshot/load", SnapshotLoadParams{
		SnapshotPath: vmstate, MemBackend: &MemoryBackend{BackendType: "Uffd", BackendPath: uffdSocket}, TrackDirtyPages: true, ResumeVM: true,
	}}
}

// Call is one API request.
type Call struct {
	Method string
	Path   string
	Body   any
}

// BootCalls are the requests that configure and start a guest, in order.
func BootCalls(vcpus, memMiB int, kernel, initrd, bootArgs, rootfs, tap, mac string, mmds map[string]any) []Call {
	smt := false
	calls := []Call{
		{http.MethodPut, "/machine-config", MachineConfiguration{VcpuCount: vcpus, MemSizeMib: memMiB, Smt: &smt, TrackDirtyPages: true}},
		{http.MethodPut, "/boot-source", BootSource{KernelImagePath: kernel, InitrdPath: initrd, BootArgs: bootArgs}},
		{http.MethodPut, "/drives/rootfs", Drive{DriveID: "rootfs", PathOnHost: rootfs, IsRootDevice: true, IsReadOnly: false, CacheType: "Unsafe", IoEngine: "Sync"}},
		{http.MethodPut, "/network-interfaces/eth0", NetworkInterface{IfaceID: "eth0", HostDevName: tap, GuestMac: mac}},
		{http.MethodPut, "/mmds/config", MmdsConfig{Version: "V2", NetworkInterfaces: []string{"eth0"}}},
	}
	if mmds != nil {
		calls = append(calls, Call{http.MethodPut, "/mmds", mmds})
	}
	return append(calls, Call{http.MethodPut, "/actions", InstanceActionInfo{ActionType: "InstanceStart"}})
}

// ShutdownCall asks the guest to power off (Ctrl-Alt-Del, which the guest
// kernel turns into SIGINT for wrenn-init).
func ShutdownCall() Call {
	return Call{http.MethodPut, "/actions", InstanceActionInfo{ActionType: "SendCtrlAltDel"}}
}

// Client talks to one Firecracker's API socket.
type Client struct {
	http *http.Client
}

// NewClient connects through socket.
func NewClient(socket string) *Client {
	return &Client{http: &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}},
	}}
}

// Do sends one call; Firecracker answers 204 on success and a JSON
// {"fault_message": "..."} otherwise.
func (c *Client) Do(ctx context.Context, call Call) error {
	body, err := json.Marshal(call.Body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, call.Method, "http://localhost"+call.Path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("firecracker %s %s: %w", call.Method, call.Path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var fault struct {
			FaultMessage string `json:"fault_message"`
		}
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		_ = json.Unmarshal(raw, &fault)
		return fmt.Errorf("firecracker %s %s: %s: %s", call.Method, call.Path, resp.Status, fault.FaultMessage)
	}
	return nil
}
