package events

import "testing"

func TestPublishSubscribeClose(t *testing.T) {
	h := New()
	a, cancelA := h.Subscribe(1)
	b, _ := h.Subscribe(1)
	h.Publish(Event{Type: "x"})
	h.Publish(Event{Type: "y"}) // both buffers full: dropped, never blocks
	if ev := <-a; ev.Type != "x" {
		t.Fatalf("a got %q", ev.Type)
	}
	if h.Dropped() != 2 {
		t.Fatalf("dropped = %d; want 2", h.Dropped())
	}
	cancelA()
	cancelA() // idempotent
	if _, ok := <-a; ok {
		t.Fatal("a still open after cancel")
	}
	h.Close()
	<-b
	if _, ok := <-b; ok {
		t.Fatal("b still open after Close")
	}
	c, _ := h.Subscribe(1)
	if _, ok := <-c; ok {
		t.Fatal("subscribe after Close must return a closed channel")
	}
}
