package server_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
)

// In a cluster of three, a release published through one node is
// announced to devices on every node, and downloads from another node's
// web, byte for byte.
func TestClusterReleases(t *testing.T) {
	c := startClusterOf(t, 0)
	ctx := t.Context()
	if _, err := accounts.EndpointAccountAdd.Call(ctx, c.admin(0), accounts.AccountAddRequest{Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	heard := make(chan int, 3)
	for i := range 3 {
		_, creds := c.issue(i, "alice", "device"+string(rune('1'+i)))
		nc, err := deviceConn(t, c.url(i), creds)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := nc.Subscribe(accounts.ReleaseSubject("linux", "arm64"), func(*nats.Msg) { heard <- i }); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	// Each node's interest in the announcements goes to the others over
	// the routes; it has, well before this.
	time.Sleep(2 * time.Second)

	data := make([]byte, 3*accounts.ReleaseChunkSize/2)
	for i := range data {
		data[i] = byte(i * 7)
	}
	up, admin := nuid.Next(), c.admin(0)
	for seq, off := 0, 0; off < len(data); seq, off = seq+1, off+accounts.ReleaseChunkSize {
		chunk := data[off:min(off+accounts.ReleaseChunkSize, len(data))]
		if _, err := accounts.EndpointReleaseUpload.Call(ctx, admin, accounts.ReleaseChunk{Upload: up, Seq: seq, Data: chunk}); err != nil {
			t.Fatal(err)
		}
	}
	sum := sha256.Sum256(data)
	rel, err := accounts.EndpointReleasePublish.Call(ctx, admin, accounts.ReleasePublishRequest{Upload: up, Chunks: 2, Version: "3.0.0",
		OS: "linux", Arch: "arm64", Kind: accounts.ReleaseClient, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])})
	if err != nil {
		t.Fatal(err)
	}
	got := map[int]bool{}
	for len(got) < 3 {
		select {
		case i := <-heard:
			got[i] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("devices on nodes %v heard of the release; want all three", got)
		}
	}

	resp, err := http.Get(c.nodes[2].Addrs().HTTP + "/downloads/client/linux/arm64/3.0.0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || sha256.Sum256(b) != sum {
		t.Errorf("download from node 3: %d, %d bytes, %v; want the file published through node 1", resp.StatusCode, len(b), err)
	}
	var list []accounts.Release
	list, err = accounts.EndpointReleaseList.Call(ctx, c.admin(1), accounts.NoRequest{})
	if err != nil || len(list) != 1 || list[0].SHA256 != rel.SHA256 {
		out, _ := json.Marshal(list)
		t.Errorf("release ls through node 2: %s, %v", out, err)
	}
}
