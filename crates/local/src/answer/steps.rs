//! Step lists: a "how do I" question answered with the numbered steps of a passage, led by
//! its heading and introduction.

use super::*;

pub(super) struct PLine<'a> {
    text: &'a str,
    blank_before: bool,
}

pub(super) fn passage_lines(passage: &str) -> Vec<PLine<'_>> {
    let mut out = Vec::new();
    let mut blank = false;
    for line in passage.lines() {
        let text = line.trim();
        if text.is_empty() {
            blank = true;
        } else {
            out.push(PLine {
                text,
                blank_before: blank,
            });
            blank = false;
        }
    }
    out
}

pub(super) struct StepList {
    /// First line of the list.
    pub(super) start: usize,
    /// Exclusive end line.
    pub(super) end: usize,
    /// First line after the previous list (or of the passage).
    section_start: usize,
    /// First line of the list's own section (its heading, if any).
    context_start: usize,
    lead: Vec<String>,
}

pub(super) fn find_step_lists(lines: &[PLine<'_>]) -> Vec<StepList> {
    let mut lists = Vec::new();
    let mut section_start = 0;
    let mut i = 0;
    while i < lines.len() {
        let Some(first) = list_marker(lines[i].text).filter(|m| m.starts_list()) else {
            i += 1;
            continue;
        };
        let end = passage_list_end(lines, i);
        let mut last = first;
        let mut primary = 1;
        for line in &lines[i + 1..end] {
            if let Some(m) = list_marker(line.text)
                && m.follows(last)
            {
                last = m;
                primary += 1;
            }
        }
        if primary < 2 {
            i += 1;
            continue;
        }
        let heading = (section_start..i)
            .rev()
            .find(|&k| looks_like_title(lines[k].text));
        let mut lead = Vec::new();
        if let Some(h) = heading {
            lead.push(lines[h].text.to_string());
        }
        if i > section_start && heading != Some(i - 1) {
            let prev = lines[i - 1].text;
            if prev.ends_with(':')
                && let Some(intro) = split_sentences(prev).last()
            {
                lead.push((*intro).to_string());
            }
        }
        lists.push(StepList {
            start: i,
            end,
            section_start,
            context_start: heading.unwrap_or(section_start),
            lead,
        });
        section_start = end;
        i = end;
    }
    lists
}

/// Where the list starting at `lines[start]` ends: after its last item, the lines glued to it
/// (no blank line before) up to a title.
pub(super) fn passage_list_end(lines: &[PLine<'_>], start: usize) -> usize {
    crate::text::list_end(
        lines,
        start,
        |line| line.text,
        |line| !line.blank_before && !looks_like_title(line.text),
    )
}

pub(super) fn answer_with_steps(
    query: &Query,
    passages: &[&str],
    passing: &[usize],
    best_coverage: f32,
    similarity: &dyn Fn(usize) -> f32,
    weights: &dyn TermWeights,
) -> Option<Extract> {
    // A list about a neighbouring task ("replace the cartridge" when asked to
    // "clean the print head") shares words with the question; it must match
    // about as well as the best passage does, or sentences answer better.
    let needed = COVERAGE_MIN.max(best_coverage - LIST_COVERAGE_SLACK);
    let mut best: Option<(f32, usize, Vec<String>)> = None;
    for &p in passing {
        let lines = passage_lines(passages[p]);
        for list in find_step_lists(&lines) {
            // Headings above the section (page or product title) say what the list is about too.
            let context: Vec<&str> = lines[list.section_start..list.context_start]
                .iter()
                .map(|l| l.text)
                .filter(|t| looks_like_title(t))
                .chain(lines[list.context_start..list.end].iter().map(|l| l.text))
                .collect();
            let coverage = query.coverage(&query.as_asked(term_set(weights, &context.join("\n"))));
            if coverage < needed && similarity(p) < SEMANTIC_LIST_MIN {
                continue;
            }
            let lead_coverage =
                query.coverage(&query.as_asked(term_set(weights, &list.lead.join("\n"))));
            let score =
                (coverage + 0.5 * lead_coverage + SEMANTIC_WEIGHT * similarity(p)) * rank_factor(p);
            if best.as_ref().is_none_or(|(s, _, _)| score > *s) {
                let mut out: Vec<String> = list.lead.clone();
                if out.is_empty() {
                    out.push("Steps:".to_string());
                }
                out.extend(
                    lines[list.start..list.end]
                        .iter()
                        .map(|l| l.text.to_string()),
                );
                best = Some((score, p, out));
            }
        }
    }
    let (_, p, lines) = best?;
    let mut text = lines.join("\n");
    text.push(' ');
    text.push_str(&cite_text(1));
    Some(Extract {
        text,
        cited: vec![p],
        found: true,
        ranking: Vec::new(),
    })
}
