package nat

// NFTStaticRules and NFTNetworkRules count the nftables backend's rules.
func NFTStaticRules() int           { return len(nftStaticRules()) }
func NFTNetworkRules(n Network) int { return len(nftNetworkRules(n)) }
