package envd

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Metrics is GET /metrics, field for field as E2B's envd reports it.
type Metrics struct {
	Timestamp   int64   `json:"ts"`
	CPUCount    uint32  `json:"cpu_count"`
	CPUUsedPct  float32 `json:"cpu_used_pct"`
	MemTotalMiB uint64  `json:"mem_total_mib"`
	MemUsedMiB  uint64  `json:"mem_used_mib"`
	MemTotal    uint64  `json:"mem_total"`
	MemUsed     uint64  `json:"mem_used"`
	MemCache    uint64  `json:"mem_cache"`
	DiskUsed    uint64  `json:"disk_used"`
	DiskTotal   uint64  `json:"disk_total"`
}

// cpuSampler computes CPU use between consecutive calls; a call without a
// recent previous sample measures over a short window instead.
type cpuSampler struct {
	mu        sync.Mutex
	busy, all uint64
	at        time.Time
}

func readCPU() (busy, all uint64, err error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0, 0, fmt.Errorf("/proc/stat is empty")
	}
	fields := strings.Fields(sc.Text())
	if len(fields) < 5 || fields[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: unexpected first line %q", sc.Text())
	}
	for i, f := range fields[1:] {
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %w", err)
		}
		all += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, all, nil
}

func (c *cpuSampler) percent() (float32, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.at) > 10*time.Second {
		busy, all, err := readCPU()
		if err != nil {
			return 0, err
		}
		c.busy, c.all, c.at = busy, all, time.Now()
		time.Sleep(100 * time.Millisecond)
	}
	busy, all, err := readCPU()
	if err != nil {
		return 0, err
	}
	var pct float64
	if all > c.all {
		pct = float64(busy-c.busy) / float64(all-c.all) * 100
	}
	c.busy, c.all, c.at = busy, all, time.Now()
	return float32(math.Round(pct*100) / 100), nil
}

func readMeminfo() (map[string]uint64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]uint64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			continue
		}
		if len(fields) > 1 && fields[1] == "kB" {
			v *= 1024
		}
		out[key] = v
	}
	return out, sc.Err()
}

func (c *cpuSampler) collect() (*Metrics, error) {
	pct, err := c.percent()
	if err != nil {
		return nil, fmt.Errorf("cpu: %w", err)
	}
	mem, err := readMeminfo()
	if err != nil {
		return nil, fmt.Errorf("memory: %w", err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs("/", &st); err != nil {
		return nil, fmt.Errorf("disk: %w", err)
	}
	total := mem["MemTotal"]
	used := total - mem["MemAvailable"]
	diskTotal := st.Blocks * uint64(st.Bsize)
	return &Metrics{
		Timestamp:   time.Now().Unix(),
		CPUCount:    uint32(runtime.NumCPU()),
		CPUUsedPct:  pct,
		MemTotalMiB: total >> 20,
		MemUsedMiB:  used >> 20,
		MemTotal:    total,
		MemUsed:     used,
		MemCache:    mem["Cached"],
		DiskUsed:    diskTotal - st.Bavail*uint64(st.Bsize),
		DiskTotal:   diskTotal,
	}, nil
}
