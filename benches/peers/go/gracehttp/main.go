// facebookgo/grace peer: `gracehttp 127.0.0.1:PORT [PIDFILE]`. SIGUSR2
// re-execs the binary with the listener inherited; the new process stops the
// old one (SIGTERM, graceful). Each process writes its pid to PIDFILE.
// Routes: GET / -> "hello\n", GET /sleep?ms=N.
package main

import (
	"fmt"
	"log"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/facebookgo/grace/gracehttp"
)

func main() {
	addr := "127.0.0.1:8080"
	if len(os.Args) > 1 {
		addr = os.Args[1]
	}
	if len(os.Args) > 2 {
		os.WriteFile(os.Args[2], []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
	}
	m := http.NewServeMux()
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("hello\n"))
	})
	m.HandleFunc("/sleep", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		time.Sleep(time.Duration(ms) * time.Millisecond)
		fmt.Fprintf(w, "slept %d ms\n", ms)
	})
	if err := gracehttp.Serve(&http.Server{Addr: addr, Handler: m}); err != nil {
		log.Fatal(err)
	}
}
