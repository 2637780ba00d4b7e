// Command badger_host is a small Go service embedding Badger v2, the way the edge
// deployment agents of the storage design do: it writes build-cache entries
// (build:<id>:output, 3 h TTL, each looked up first) at a given rate and serves Go's
// expvar (/debug/vars, where Badger publishes its badger_v2_* variables) so the
// exporter has a real host to watch. SIGTERM or SIGINT (or GET /quit) closes the database cleanly and exits 0.
package main

import (
	"context"
	_ "expvar"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	badger "github.com/dgraph-io/badger/v2"
)

func main() {
	dir := flag.String("dir", "", "Badger directory (created if missing)")
	addr := flag.String("addr", "127.0.0.1:0", "where to serve /debug/vars")
	rate := flag.Float64("rate", 100, "build-cache entries written per second (0: none)")
	count := flag.Int64("count", 0, "stop writing after this many entries (0: never); the host keeps serving")
	valueSize := flag.Int("value-size", 2048, "bytes per value (over the value threshold: they go to the value log)")
	ttl := flag.Duration("ttl", 3*time.Hour, "TTL of each entry (the design's build cache: 3h)")
	vlogSize := flag.Int64("vlog-file-size", 8<<20, "value log file size; small so tests see several files")
	tableSize := flag.Int64("table-size", 2<<20, "SSTable size")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "badger_host: -dir is required")
		os.Exit(2)
	}
	opts := badger.DefaultOptions(*dir).
		WithLogger(nil).
		WithValueLogFileSize(*vlogSize).
		WithMaxTableSize(*tableSize).
		WithValueThreshold(1024)
	db, err := badger.Open(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "badger_host: open:", err)
		os.Exit(1)
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "badger_host: listen:", err)
		db.Close()
		os.Exit(1)
	}
	quit := make(chan struct{}, 1)
	var written int64
	http.HandleFunc("/quit", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "bye")
		select {
		case quit <- struct{}{}:
		default:
		}
	})
	http.HandleFunc("/written", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, atomic.LoadInt64(&written))
	})
	srv := &http.Server{}
	go srv.Serve(ln)

	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		if *rate <= 0 {
			<-stop
			return
		}
		value := []byte(strings.Repeat("x", *valueSize))
		interval := time.Duration(float64(time.Second) / *rate)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		id := time.Now().UnixNano()
		for *count <= 0 || atomic.LoadInt64(&written) < *count {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			id++
			key := []byte(fmt.Sprintf("build:%d:output", id))
			// A build looks its output up first (a cache miss for a new build): the
			// lookup walks the LSM levels, which counts level gets and bloom hits.
			_ = db.View(func(txn *badger.Txn) error {
				_, err := txn.Get(key)
				return err
			})
			err := db.Update(func(txn *badger.Txn) error {
				return txn.SetEntry(badger.NewEntry(key, value).WithTTL(*ttl))
			})
			if err != nil {
				fmt.Fprintln(os.Stderr, "badger_host: write:", err)
				continue
			}
			atomic.AddInt64(&written, 1)
		}
		<-stop
	}()

	// The line the Python helper waits for: the real port when -addr asked for :0.
	fmt.Printf("ready %s\n", ln.Addr().String())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-sig:
	case <-quit:
	}
	close(stop)
	<-done
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	srv.Shutdown(ctx)
	cancel()
	if err := db.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "badger_host: close:", err)
		os.Exit(1)
	}
}
