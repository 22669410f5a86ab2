//! The order nodes are printed in: topological, with ties broken by names only.
//!
//! Kahn's algorithm where, among the nodes whose producers are all printed, the one with the
//! smallest key goes first. The key is (node name, first output name, printed line), compared in
//! natural order (`Conv_2` before `Conv_10`). Nothing in the key depends on the file's order or on
//! an index of the IR, so reordering nodes in the file does not change the text.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};

use crate::ir::{Graph, NodeId};

/// The nodes of a graph in print order. `cyclic` holds the nodes on or behind a cycle (only a
/// broken graph has any), in key order.
pub(super) struct NodeOrder {
    pub sorted: Vec<NodeId>,
    pub cyclic: Vec<NodeId>,
}

/// Orders the nodes of `g`; `heads` is the printed line of each node (the last tie-breaker).
pub(super) fn node_order(g: &Graph, heads: &HashMap<NodeId, String>) -> NodeOrder {
    let ranked = ranked_nodes(g, heads);
    let rank: HashMap<NodeId, usize> = ranked.iter().enumerate().map(|(r, id)| (*id, r)).collect();
    let mut indegree = vec![0usize; ranked.len()];
    let mut readers: Vec<Vec<usize>> = vec![Vec::new(); ranked.len()];
    for (r, id) in ranked.iter().enumerate() {
        let node = g.node(*id).expect("listed node");
        let mut deps: Vec<usize> = node
            .inputs()
            .iter()
            .flatten()
            .chain(node.captures())
            .filter_map(|v| g.value(*v).producer())
            .filter_map(|p| rank.get(&p).copied())
            .collect();
        deps.sort_unstable();
        deps.dedup();
        indegree[r] = deps.len();
        for d in deps {
            readers[d].push(r);
        }
    }
    // Ranks follow the key, so the smallest ready rank is the next node to print.
    let mut ready: BinaryHeap<Reverse<usize>> = (0..ranked.len()).filter(|&r| indegree[r] == 0).map(Reverse).collect();
    let mut done = vec![false; ranked.len()];
    let mut sorted = Vec::with_capacity(ranked.len());
    while let Some(Reverse(r)) = ready.pop() {
        sorted.push(ranked[r]);
        done[r] = true;
        for &reader in &readers[r] {
            indegree[reader] -= 1;
            if indegree[reader] == 0 {
                ready.push(Reverse(reader));
            }
        }
    }
    let cyclic = (0..ranked.len()).filter(|&r| !done[r]).map(|r| ranked[r]).collect();
    NodeOrder { sorted, cyclic }
}

/// All nodes sorted by their key.
fn ranked_nodes(g: &Graph, heads: &HashMap<NodeId, String>) -> Vec<NodeId> {
    let key = |id: NodeId| {
        let node = g.node(id).expect("listed node");
        let first_output = node.outputs().iter().flatten().next().map(|v| g.value(*v).name.as_str()).unwrap_or("");
        (node.name(), first_output, heads.get(&id).map(String::as_str).unwrap_or(""))
    };
    let mut ids = g.node_ids();
    ids.sort_by(|a, b| {
        let (ka, kb) = (key(*a), key(*b));
        natural_cmp(ka.0, kb.0).then_with(|| natural_cmp(ka.1, kb.1)).then_with(|| ka.2.cmp(kb.2))
    });
    ids
}

/// Natural order: runs of ASCII digits compare by their numeric value, everything else byte by
/// byte; strings equal in that order (`a01`, `a1`) fall back to plain byte order.
pub(super) fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    loop {
        match (x.first(), y.first()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(p), Some(q)) if p.is_ascii_digit() && q.is_ascii_digit() => {
                let (dx, rest_x) = split_digits(x);
                let (dy, rest_y) = split_digits(y);
                let (nx, ny) = (trim_zeros(dx), trim_zeros(dy));
                let by_value = nx.len().cmp(&ny.len()).then_with(|| nx.cmp(ny));
                if by_value != Ordering::Equal {
                    return by_value;
                }
                (x, y) = (rest_x, rest_y);
            }
            (Some(p), Some(q)) => {
                if p != q {
                    return p.cmp(q);
                }
                (x, y) = (&x[1..], &y[1..]);
            }
        }
    }
}

fn split_digits(s: &[u8]) -> (&[u8], &[u8]) {
    let n = s.iter().take_while(|b| b.is_ascii_digit()).count();
    s.split_at(n)
}

fn trim_zeros(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| **b == b'0').count();
    &s[n..]
}

#[cfg(test)]
mod tests {
    use super::natural_cmp;
    use std::cmp::Ordering::*;

    #[test]
    fn natural_order() {
        assert_eq!(natural_cmp("Conv_2", "Conv_10"), Less);
        assert_eq!(natural_cmp("Conv_10", "Conv_9"), Greater);
        assert_eq!(natural_cmp("a", "a_1"), Less);
        assert_eq!(natural_cmp("a01", "a1"), "a01".cmp("a1"));
        assert_eq!(natural_cmp("x.w_0", "x.b_0"), Greater);
        assert_eq!(natural_cmp("", "a"), Less);
        assert_eq!(natural_cmp("a2b", "a2a"), Greater);
    }
}
