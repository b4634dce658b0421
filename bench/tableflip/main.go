// The tableflip anchor of the handoff latency benchmark: Cloudflare's canonical HTTP server example
// (http_example_test.go of github.com/cloudflare/tableflip) with the sample's "/" answer (a fixed-length body
// with the zero-padded pid) and one log line at Ready: "ready N ms after process start" (from /proc, 10 ms ticks).
// Built by bench/latency.py with Debian's golang-go and golang-github-cloudflare-tableflip-dev, offline:
// GO111MODULE=off GOPATH=/usr/share/gocode go build.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cloudflare/tableflip"
)

// msSinceProcessStart: uptime minus the process's start time (field 22 of /proc/self/stat, clock ticks of 10 ms).
func msSinceProcessStart() float64 {
	stat, err1 := os.ReadFile("/proc/self/stat")
	uptime, err2 := os.ReadFile("/proc/uptime")
	if err1 != nil || err2 != nil {
		return -1
	}
	s := string(stat)
	fields := strings.Fields(s[strings.LastIndex(s, ")")+2:])
	ticks, _ := strconv.ParseFloat(fields[19], 64)
	up, _ := strconv.ParseFloat(strings.Fields(string(uptime))[0], 64)
	return up*1000 - ticks*10
}

func main() {
	var (
		listenAddr = flag.String("listen", "localhost:8080", "`Address` to listen on")
		pidFile    = flag.String("pid-file", "", "`Path` to pid file")
	)

	flag.Parse()
	log.SetPrefix(fmt.Sprintf("%d ", os.Getpid()))
	log.SetFlags(log.Lmicroseconds)

	upg, err := tableflip.New(tableflip.Options{
		PIDFile: *pidFile,
	})
	if err != nil {
		panic(err)
	}
	defer upg.Stop()

	// Do an upgrade on SIGHUP
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGHUP)
		for range sig {
			err := upg.Upgrade()
			if err != nil {
				log.Println("Upgrade failed:", err)
			}
		}
	}()

	// Listen must be called before Ready
	ln, err := upg.Listen("tcp", *listenAddr)
	if err != nil {
		log.Fatalln("Can't listen:", err)
	}

	body := fmt.Sprintf("Hello from tableflip HTTP example server, pid %07d\n", os.Getpid())
	server := http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Write([]byte(body))
		}),
	}

	go func() {
		err := server.Serve(ln)
		if err != http.ErrServerClosed {
			log.Println("HTTP server:", err)
		}
	}()

	if err := upg.Ready(); err != nil {
		panic(err)
	}
	log.Printf("ready %.0f ms after process start", msSinceProcessStart())
	<-upg.Exit()
	log.Printf("exit: shutting down")

	// Make sure to set a deadline on exiting the process
	// after upg.Exit() is closed. No new upgrades can be
	// performed if the parent doesn't exit.
	time.AfterFunc(30*time.Second, func() {
		log.Println("Graceful shutdown timed out")
		os.Exit(1)
	})

	// Wait for connections to drain.
	server.Shutdown(context.Background())
	log.Printf("drained")
}
