// The format reward: <think>…</think> then <answer>…</answer>.

enum Tags {
    static let thinkOpen = scalars("<think>")
    static let thinkClose = scalars("</think>")
    static let answerOpen = scalars("<answer>")
    static let answerClose = scalars("</answer>")

    /// Positions of every occurrence of `p` in `t`.
    static func occurrences(_ p: Scalars, _ t: Scalars) -> [Int] {
        var out: [Int] = []
        guard p.count <= t.count else { return out }
        var i = 0
        while i + p.count <= t.count {
            if t[i] == p[0], Answers.matches(p, t[...], at: i) {
                out.append(i)
                i += p.count
            } else {
                i += 1
            }
        }
        return out
    }
}

/// Strict format: each of the four tags placed as in
/// `␣*<think>…</think>␣*<answer>…</answer>␣*`, each exactly once, a quarter each:
/// <think> opens the completion (after whitespace); </think> comes after <think>; <answer>
/// follows </think> with only whitespace between; </answer> comes after <answer> and only
/// whitespace follows it. All four placed is exactly the format (1.0).
func strictFormat(_ t: Scalars) -> (score: Double, placed: [Bool]) {
    let to = Tags.occurrences(Tags.thinkOpen, t), tc = Tags.occurrences(Tags.thinkClose, t)
    let ao = Tags.occurrences(Tags.answerOpen, t), ac = Tags.occurrences(Tags.answerClose, t)
    var placed = [false, false, false, false]
    if to.count == 1, t[..<to[0]].allSatisfy(isSpace) { placed[0] = true }
    if tc.count == 1, to.first.map({ tc[0] > $0 }) ?? true { placed[1] = true }
    if ao.count == 1 {
        var j = ao[0]
        while j > 0, isSpace(t[j - 1]) { j -= 1 }
        if j >= Tags.thinkClose.count, Answers.matches(Tags.thinkClose, t[...], at: j - Tags.thinkClose.count) { placed[2] = true }
    }
    if ac.count == 1, ao.first.map({ ac[0] > $0 }) ?? true, t[(ac[0] + Tags.answerClose.count)...].allSatisfy(isSpace) {
        placed[3] = true
    }
    return (Double(placed.filter { $0 }.count) / 4, placed)
}

/// The paper's format reward: `re.match(r"^<think>.*?</think>\s*<answer>.*?</answer>$", text,
/// re.DOTALL | re.MULTILINE)`. With DOTALL and backtracking the lazy parts may run past tags, and
/// MULTILINE lets `$` match before any "\n": so the text must start with <think>, some </think>
/// must be followed (after whitespace) by <answer>, and some later </answer> must end the text or
/// a line.
func paperFormat(_ t: Scalars) -> Bool {
    guard Answers.matches(Tags.thinkOpen, t[...], at: 0) else { return false }
    var lastEnd = -1
    for k in Tags.occurrences(Tags.answerClose, t).reversed() {
        let e = k + Tags.answerClose.count
        if e == t.count || t[e] == 0x0A { lastEnd = k; break }
    }
    guard lastEnd >= 0 else { return false }
    var i = Tags.thinkOpen.count
    let close = Tags.thinkClose
    while i + close.count <= t.count {
        if t[i] == 0x3C, Answers.matches(close, t[...], at: i) {
            var j = i + close.count
            while j < t.count, isSpace(t[j]) { j += 1 }
            if Answers.matches(Tags.answerOpen, t[...], at: j) {
                if j + Tags.answerOpen.count <= lastEnd { return true }
                return false  // later </think>s only push <answer> further right
            }
            i = max(j, i + 1)
        } else {
            i += 1
        }
    }
    return false
}

/// The text inside the (single) <think>…</think>, lower-cased, for the guarded reflection.
func thinkContent(_ t: Scalars) -> Scalars.SubSequence? {
    guard let o = Answers.firstIndex(of: Tags.thinkOpen, in: t[...]) else { return nil }
    let s = o + Tags.thinkOpen.count
    guard let c = Answers.firstIndex(of: Tags.thinkClose, in: t[s...]) else { return nil }
    return t[s..<c]
}
