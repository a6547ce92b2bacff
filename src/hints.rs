//! "Did you mean" hints: the closest of some names to one a client gave.

/// The candidate most similar to `name` (normalized Levenshtein at least `threshold`);
/// none when two candidates tie, since a hint naming one of them would be a guess.
pub fn closest<'a>(
    candidates: impl Iterator<Item = &'a str>,
    name: &str,
    threshold: f64,
) -> Option<String> {
    let mut best: Option<(f64, &str)> = None;
    let mut tie = false;
    let name_len = name.chars().count();
    for c in candidates {
        // Similarity is at most shorter/longer length: skipping candidates that cannot
        // reach the threshold changes no answer, and keeps a 400 KB name in a URL from
        // costing O(length x candidates) of edit distance.
        let c_len = c.chars().count();
        let (short, long) = (c_len.min(name_len), c_len.max(name_len));
        if long > 0 && (short as f64) < threshold * long as f64 {
            continue;
        }
        let score = strsim::normalized_levenshtein(c, name);
        match best {
            Some((b, other)) if (score - b).abs() < 1e-9 && other != c => tie = true,
            Some((b, _)) if score <= b => {}
            _ => {
                best = Some((score, c));
                tie = false;
            }
        }
    }
    best.filter(|(score, _)| *score >= threshold && !tie)
        .map(|(_, c)| c.to_string())
}
