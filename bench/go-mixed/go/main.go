// A Go rueidislock worker for bench/go-mixed: one Locker on one Redis, driven line by line over
// stdin/stdout by ../driver.ts with the same JSON protocol as ../tracklock-worker.ts, so the
// driver treats a Go and a Node worker alike.
//
// Times are CLOCK_MONOTONIC in ms, the clock every process on the machine shares (Node's
// process.hrtime reads the same one), so a release in one process and an acquire in another
// can be subtracted.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/redis/rueidis"
	"github.com/redis/rueidis/rueidislock"
	"golang.org/x/sys/unix"
)

type command struct {
	Cmd     string  `json:"cmd"`
	Name    string  `json:"name"`
	Counter string  `json:"counter"`
	UntilMs float64 `json:"untilMs"`
}

var (
	outMu sync.Mutex
	out   = json.NewEncoder(os.Stdout)
)

func emit(event map[string]any) {
	outMu.Lock()
	defer outMu.Unlock()
	_ = out.Encode(event)
}

func fail(err error) {
	emit(map[string]any{"event": "error", "message": err.Error()})
	os.Exit(1)
}

func monoMs() float64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		fail(err)
	}
	return float64(ts.Sec)*1e3 + float64(ts.Nsec)/1e6
}

func main() {
	addr := flag.String("addr", "127.0.0.1:6379", "Redis address, host:port")
	noLoop := flag.Bool("noloop", true, "rueidislock's NoLoopTracking")
	majority := flag.Int("majority", 2, "rueidislock's KeyMajority")
	flag.Parse()

	// KeyValidity, ExtendInterval, TryNextAfter and KeyPrefix stay at rueidislock's defaults.
	locker, err := rueidislock.NewLocker(rueidislock.LockerOption{
		ClientOption:   rueidis.ClientOption{InitAddress: []string{*addr}},
		KeyMajority:    int32(*majority),
		NoLoopTracking: *noLoop,
	})
	if err != nil {
		fail(err)
	}
	defer locker.Close()
	client := locker.Client()
	if err := client.Do(context.Background(), client.B().Ping().Build()).Error(); err != nil {
		fail(err)
	}
	emit(map[string]any{
		"event": "ready", "pid": os.Getpid(), "side": "go", "noLoop": *noLoop,
		"go": runtime.Version(), "rueidis": rueidisVersion(),
	})

	var held context.CancelFunc
	var wg sync.WaitGroup
	lines := bufio.NewScanner(os.Stdin)
	for lines.Scan() {
		var c command
		if err := json.Unmarshal(lines.Bytes(), &c); err != nil {
			fail(err)
		}
		switch c.Cmd {
		case "loop":
			wg.Add(1)
			go func() {
				defer wg.Done()
				emit(loop(locker, client, c))
			}()
		case "acquire":
			// Answers at once with "waiting", then with "acquired" when the lock is ours.
			emit(map[string]any{"event": "waiting", "t": monoMs()})
			_, cancel, err := locker.WithContext(context.Background(), c.Name)
			t := monoMs()
			if err != nil {
				fail(err)
			}
			held = cancel
			emit(map[string]any{"event": "acquired", "t": t})
		case "release":
			t0 := monoMs()
			held()
			t1 := monoMs()
			held = nil
			emit(map[string]any{"event": "released", "t0": t0, "t1": t1})
		case "close":
			wg.Wait()
			locker.Close()
			emit(map[string]any{"event": "closed"})
			return
		default:
			fail(fmt.Errorf("unknown command %q", c.Cmd))
		}
		// "acquire" blocks the reader on purpose: the driver sends nothing else to a waiter.
	}
}

// loop runs acquire → GET/SET of the counter → release on one name until c.UntilMs. The
// deadline cancels only a wait: a lock already ours finishes its critical section, so the last
// section of the run is as protected as the others.
func loop(locker rueidislock.Locker, client rueidis.Client, c command) map[string]any {
	var mu sync.Mutex
	waiting := false
	stopped := false
	var stopWait context.CancelFunc = func() {}
	timer := time.AfterFunc(time.Duration((c.UntilMs-monoMs())*float64(time.Millisecond)), func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		if waiting {
			stopWait()
		}
	})
	defer timer.Stop()

	count, lost, errs, cancelled := 0, 0, 0, 0
	var waits []float64
	var lastErr string
	for i := 0; i < 10_000_000; i++ {
		mu.Lock()
		if stopped {
			mu.Unlock()
			break
		}
		ctx, cancel := context.WithCancel(context.Background())
		stopWait, waiting = cancel, true
		mu.Unlock()

		t0 := monoMs()
		lockCtx, release, err := locker.WithContext(ctx, c.Name)
		wait := monoMs() - t0
		mu.Lock()
		waiting = false
		mu.Unlock()
		if err != nil {
			cancel()
			if ctx.Err() == nil {
				errs++
				lastErr = err.Error()
			}
			continue
		}
		if lockCtx.Err() != nil {
			// The deadline cancelled the wait just as the lock was taken: it was released.
			release()
			cancel()
			cancelled++
			continue
		}
		waits = append(waits, wait)
		if err := increment(client, c.Counter); err != nil {
			errs++
			lastErr = err.Error()
		}
		if lockCtx.Err() != nil {
			lost++
		}
		release()
		cancel()
		count++
	}
	return map[string]any{
		"event": "loop", "count": count, "lost": lost, "errors": errs, "lastError": lastErr,
		"cancelledAtDeadline": cancelled, "wait": summary(waits),
	}
}

func increment(client rueidis.Client, key string) error {
	ctx := context.Background()
	v, err := client.Do(ctx, client.B().Get().Key(key).Build()).AsInt64()
	if rueidis.IsRedisNil(err) {
		v, err = 0, nil
	}
	if err != nil {
		return err
	}
	return client.Do(ctx, client.B().Set().Key(key).Value(strconv.FormatInt(v+1, 10)).Build()).Error()
}

func summary(ms []float64) map[string]any {
	if len(ms) == 0 {
		return map[string]any{"n": 0}
	}
	sort.Float64s(ms)
	at := func(q float64) float64 { return ms[int(q*float64(len(ms)-1))] }
	over1s := 0
	for _, wait := range ms {
		if wait >= 1000 {
			over1s++
		}
	}
	return map[string]any{"n": len(ms), "p50": at(0.5), "p99": at(0.99), "max": ms[len(ms)-1], "over1s": over1s}
}

// rueidisVersion is the rueidis module this binary was built with, and its replacement if any.
func rueidisVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, dep := range info.Deps {
		if dep.Path == "github.com/redis/rueidis" {
			if dep.Replace != nil {
				return dep.Version + " => " + dep.Replace.Path
			}
			return dep.Version
		}
	}
	return "unknown"
}
