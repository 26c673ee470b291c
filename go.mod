module github.com/sandnet/sandnet

go 1.26.8

require (
	github.com/coreos/go-iptables v0.8.0
	github.com/miekg/dns v1.1.73
	github.com/vishvananda/netlink v1.3.1
	github.com/vishvananda/netns v0.0.5
	golang.org/x/sys v0.49.0
)

require golang.org/x/net v0.57.0 // indirect
