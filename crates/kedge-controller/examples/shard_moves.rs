//! Prints how the applications are shared among replicas and how many move when a replica joins or leaves:
//! `cargo run --release -p kedge-controller --example shard_moves -- [APPS] [REPLICAS]` (default 3000 and 3).

use std::collections::HashMap;

use kedge_controller::shard::owners;

fn shares(members: &[String], owner: &HashMap<String, String>) -> String {
    members
        .iter()
        .map(|m| owner.values().filter(|o| *o == m).count().to_string())
        .collect::<Vec<_>>()
        .join(" / ")
}

fn main() {
    let mut args = std::env::args().skip(1);
    let apps: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3000);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3).max(2);
    let keys: Vec<String> = (0..apps).map(|i| format!("apps/app-{i}")).collect();
    let members: Vec<String> = (0..n).map(|i| format!("kedge-{i}")).collect();
    let started = std::time::Instant::now();
    let before = owners(&members, &keys);
    let took = started.elapsed();
    println!(
        "{apps} applications over {n} replicas: {} (assignment computed in {took:?})",
        shares(&members, &before)
    );
    let mut joined = members.clone();
    joined.push(format!("kedge-{n}"));
    let after = owners(&joined, &keys);
    let moved = keys.iter().filter(|k| before[*k] != after[*k]).count();
    let to_new = keys.iter().filter(|k| after[*k] == joined[n]).count();
    println!(
        "a replica joins: {moved} applications move ({to_new} to the newcomer, {} between the others; fair share {})",
        moved - to_new,
        apps / (n + 1)
    );
    let left: Vec<String> = members[1..].to_vec();
    let after = owners(&left, &keys);
    let moved = keys.iter().filter(|k| before[*k] != after[*k]).count();
    let orphaned = before.values().filter(|o| **o == members[0]).count();
    println!(
        "a replica leaves: {moved} applications move ({orphaned} were the leaver's, {} between the others)",
        moved - orphaned
    );
}
