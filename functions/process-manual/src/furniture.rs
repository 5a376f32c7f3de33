//! The furniture of a printed page: running headers and footers ("FreedomBox Manual 16 / 278",
//! "Page 3", the manual's title on every page) and table-of-contents leaders
//! ("5.3 Velocity of sound . . . . 50"). Neither says anything a question is about, yet both
//! match question words: a contents line outranks the page it points to, and an answer taken
//! from a page began with the manual's title. They are removed from the pages before anything
//! is indexed, in both modes.

use std::collections::HashMap;

/// Lines of a page's top and bottom looked at for running headers and footers.
const EDGE_LINES: usize = 2;
/// A manual needs this many pages before anything on them counts as repeated.
const MIN_PAGES: usize = 3;
/// A line with a number in it (a page or chapter number) that repeats at the edge of at least
/// this share of pages is running: chapter headers repeat only within their chapter.
const NUMBERED_SHARE: f64 = 0.1;
/// A line without a number must sit at the edge of most pages: a heading that starts several
/// pages is content.
const UNNUMBERED_SHARE: f64 = 0.5;
/// At most this many words of running lines make a manual's running title.
const MAX_TITLE_WORDS: usize = 24;
/// Dots (or middle dots, ellipses) in a row before a trailing page number make a leader.
const LEADER_DOTS: usize = 4;

/// A manual's pages without their furniture.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Unfurnished {
    pub pages: Vec<String>,
    /// The words of what runs along most pages ("Acme LaserJet User Manual"): what the manual is
    /// about, which every page shares although its text no longer says so. Empty when nothing does.
    pub running_title: String,
}

/// The pages without their running headers and footers and without contents lines; everything
/// else, line breaks included, is kept as it was.
pub fn without_furniture(pages: Vec<String>) -> Unfurnished {
    let running = running_lines(&pages);
    let running_title = running_title(&pages, &running);
    let pages = pages
        .into_iter()
        .map(|page| {
            let lines: Vec<&str> = page.lines().collect();
            let edges = edge_positions(&lines);
            let kept: Vec<&str> = lines
                .iter()
                .enumerate()
                .filter(|(position, line)| {
                    let running_here =
                        edges.contains(position) && running.contains_key(&shape(line));
                    !is_contents_line(line) && !running_here
                })
                .map(|(_, line)| *line)
                .collect();
            if kept.len() == lines.len() {
                page
            } else {
                kept.join("\n").trim().to_owned()
            }
        })
        .collect();
    Unfurnished {
        pages,
        running_title,
    }
}

/// The words of the running lines on most pages, in the order first printed: every word with a
/// letter, and numbers that stay the same from page to page (the "200" of "LaserJet 200", not
/// the page number).
fn running_title(pages: &[String], running: &HashMap<String, usize>) -> String {
    let mut occurrences: Vec<(&str, Vec<&str>)> = Vec::new();
    for page in pages {
        let lines: Vec<&str> = page.lines().collect();
        for position in edge_positions(&lines) {
            let line = lines[position];
            let Some((shape, &count)) = running.get_key_value(&shape(line)) else {
                continue;
            };
            if (count as f64) < UNNUMBERED_SHARE * pages.len() as f64 {
                continue;
            }
            match occurrences
                .iter_mut()
                .find(|(seen, _)| *seen == shape.as_str())
            {
                Some((_, lines)) => lines.push(line),
                None => occurrences.push((shape.as_str(), vec![line])),
            }
        }
    }
    let mut words: Vec<&str> = Vec::new();
    for (_, lines) in &occurrences {
        for word in lines[0].split_whitespace() {
            let constant = || {
                let printed = lines
                    .iter()
                    .filter(|line| line.split_whitespace().any(|other| other == word))
                    .count();
                printed * 2 > lines.len()
            };
            if words.len() < MAX_TITLE_WORDS
                && !words.contains(&word)
                && (word.chars().any(char::is_alphabetic)
                    || (word.chars().any(|c| c.is_ascii_digit()) && constant()))
            {
                words.push(word);
            }
        }
    }
    words.join(" ")
}

/// The shapes of lines repeated at the top or bottom of enough pages, with their page counts.
fn running_lines(pages: &[String]) -> HashMap<String, usize> {
    if pages.len() < MIN_PAGES {
        return HashMap::new();
    }
    let mut pages_with: HashMap<String, usize> = HashMap::new();
    for page in pages {
        let lines: Vec<&str> = page.lines().collect();
        let mut shapes: Vec<String> = edge_positions(&lines)
            .into_iter()
            .map(|position| shape(lines[position]))
            .filter(|shape| !shape.is_empty())
            .collect();
        shapes.sort();
        shapes.dedup();
        for shape in shapes {
            *pages_with.entry(shape).or_default() += 1;
        }
    }
    let pages_total = pages.len() as f64;
    pages_with.retain(|shape, count| {
        let share = if shape.contains('#') {
            NUMBERED_SHARE
        } else {
            UNNUMBERED_SHARE
        };
        *count >= MIN_PAGES && *count as f64 >= share * pages_total
    });
    pages_with
}

/// Positions of the first and last few non-empty lines of a page.
fn edge_positions(lines: &[&str]) -> Vec<usize> {
    let filled: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(position, _)| position)
        .collect();
    let mut edges: Vec<usize> = filled.iter().take(EDGE_LINES).copied().collect();
    edges.extend(filled.iter().rev().take(EDGE_LINES));
    edges.sort_unstable();
    edges.dedup();
    edges
}

/// A line as it repeats from page to page: lower case, single spaces, every number `#` (the
/// page number changes, the header does not).
fn shape(line: &str) -> String {
    let mut shaped = String::with_capacity(line.len());
    let mut in_number = false;
    for c in line.trim().chars() {
        if c.is_ascii_digit() {
            if !in_number {
                shaped.push('#');
            }
            in_number = true;
            continue;
        }
        in_number = false;
        if c.is_whitespace() {
            if !shaped.ends_with(' ') {
                shaped.push(' ');
            }
        } else {
            shaped.extend(c.to_lowercase());
        }
    }
    shaped
}

/// "2.1 Option Descriptions . . . . . . 5": a title, a dot leader, a page number.
fn is_contents_line(line: &str) -> bool {
    let without_number = line
        .trim_end()
        .trim_end_matches(|c: char| c.is_ascii_digit() || matches!(c, 'i' | 'v' | 'x'));
    if without_number.len() == line.trim_end().len() {
        return false;
    }
    let mut dots = 0;
    for c in without_number.chars().rev() {
        match c {
            '.' | '·' | '•' => dots += 1,
            '…' => dots += 3,
            c if c.is_whitespace() => {}
            _ => break,
        }
    }
    dots >= LEADER_DOTS
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPICS: [&str; 6] = ["toner", "paper", "wifi", "jams", "cleaning", "warranty"];

    fn page(header: &str, number: usize, body: &str) -> String {
        format!("{header} {number} / 40\n{body}\n\nPage {number}")
    }

    #[test]
    fn running_headers_and_footers_leave_every_page() {
        let pages: Vec<String> = (1..=6)
            .map(|n| page("FreedomBox Manual", n, &format!("About {}.", TOPICS[n - 1])))
            .collect();
        let cleaned = without_furniture(pages);
        assert_eq!(cleaned.pages[0], "About toner.");
        assert_eq!(cleaned.pages[5], "About warranty.");
        // The page count stays the same, the page number does not.
        assert_eq!(cleaned.running_title, "FreedomBox Manual 40 Page");
    }

    #[test]
    fn a_title_on_most_pages_is_running_but_a_heading_on_a_few_is_content() {
        let mut pages: Vec<String> = (1..=6)
            .map(|n| {
                format!(
                    "Acme LaserJet 200 User Manual\nAll about {}.",
                    TOPICS[n - 1]
                )
            })
            .collect();
        pages.push("Troubleshooting\nThe red light blinks.".to_owned());
        pages.push("Troubleshooting\nPaper jams.".to_owned());
        pages.push("Troubleshooting\nStreaks on the page.".to_owned());
        pages.extend((0..2).map(|n| format!("Other heading {}\nMore text.", "x".repeat(n + 1))));
        let cleaned = without_furniture(pages);
        assert_eq!(cleaned.running_title, "Acme LaserJet 200 User Manual");
        let cleaned = cleaned.pages;
        assert_eq!(cleaned[0], "All about toner.");
        // The title is on six of eleven pages; a heading on three of them is content.
        assert_eq!(cleaned[6], "Troubleshooting\nThe red light blinks.");
    }

    #[test]
    fn the_same_line_inside_the_body_is_kept() {
        let mut pages: Vec<String> = (1..=5)
            .map(|n| {
                let topic = TOPICS[n - 1];
                format!("Network UPS Tools User Manual {n} / 123\nOn {topic}.\nMore.\nEnd of {topic}.\n{n}")
            })
            .collect();
        pages.push(
            "Intro.\nSee the Network UPS Tools User Manual 1 / 123 line.\nMiddle.\nMore.\nOutro."
                .to_owned(),
        );
        let cleaned = without_furniture(pages).pages;
        assert_eq!(cleaned[0], "On toner.\nMore.\nEnd of toner.");
        assert!(cleaned[5].contains("Network UPS Tools User Manual 1 / 123"));
    }

    #[test]
    fn short_manuals_have_no_running_lines() {
        let pages = vec!["Title\nOne.".to_owned(), "Title\nTwo.".to_owned()];
        let cleaned = without_furniture(pages.clone());
        assert_eq!(cleaned.pages, pages);
        assert_eq!(cleaned.running_title, "");
    }

    #[test]
    fn contents_lines_go_and_sentences_ending_in_numbers_stay() {
        let page = "Contents\n5.3 Velocity of sound . . . . . . . . 50\n2.1 Options........ 5\n\
                    Preface …… iv\nThe tank holds 1.5 litres at 20\nSet it to level 3."
            .to_owned();
        let cleaned = without_furniture(vec![page]).pages;
        assert_eq!(
            cleaned[0],
            "Contents\nThe tank holds 1.5 litres at 20\nSet it to level 3."
        );
    }

    #[test]
    fn a_page_of_only_furniture_becomes_empty() {
        let pages: Vec<String> = (1..=4)
            .map(|n| format!("Manual {n}\n1 Intro . . . . . {n}"))
            .collect();
        assert!(without_furniture(pages).pages.iter().all(String::is_empty));
    }
}
