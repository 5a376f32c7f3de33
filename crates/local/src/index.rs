//! The local knowledge base, hybrid: a tantivy BM25 index of chunks and a dense embedding of
//! each chunk (all-MiniLM-L6-v2, stored with it), fused by reciprocal rank. Every chunk carries
//! its owner's user id; both searches only ever see the asking user's chunks.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use manuel_core::PortError;
use manuel_core::domain::{Manual, RetrievedChunk, UserId};
use manuel_core::ports::KnowledgeBase;
use tantivy::collector::DocSetCollector;
use tantivy::collector::{Count, TopDocs};
use tantivy::directory::MmapDirectory;
use tantivy::query::{BooleanQuery, BoostQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    BytesOptions, Field, IndexRecordOption, NumericOptions, STRING, Schema, TextFieldIndexing,
    TextOptions, Value,
};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer,
};
use tantivy::{
    Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, TantivyDocument, Term, doc,
};

use crate::answer::TermWeights;
use crate::chunk::chunk_pages;
use crate::embedding::{self, Embedder};
use crate::question_words::manual_words_for;

const ANALYZER: &str = "manuel_en";
const WRITER_MEMORY_BYTES: usize = 30_000_000;
/// A manual's name matters less than its text, but helps "the printer manual says…" questions.
const TITLE_BOOST: f32 = 0.3;
/// Reciprocal rank fusion: a chunk's score is the sum of `1 / (RRF_K + rank)` over the two
/// rankings; 60 is the usual constant, which keeps one list's top hit from dominating.
const RRF_K: f32 = 60.0;
/// A manual's word for a question's word ("weight" for "heavy") counts less than the
/// question's own words: it is a likely rewording, not what was asked.
const MANUAL_WORD_BOOST: f32 = 0.7;
/// Each ranking contributes this many candidates per result asked for (at least `MIN_POOL`).
const POOL_FACTOR: usize = 4;
const MIN_POOL: usize = 40;

#[derive(Clone, Copy)]
struct Fields {
    user: Field,
    owner_manual: Field,
    manual_id: Field,
    page: Field,
    text: Field,
    title: Field,
    subject: Field,
    chunk: Field,
    vector: Field,
}

pub struct LocalIndex {
    inner: Arc<Inner>,
}

struct Inner {
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    fields: Fields,
    analyzer: TextAnalyzer,
    embedder: Arc<Embedder>,
    /// Each user's chunks with their embeddings, loaded on first search, dropped when the
    /// user's manuals change.
    dense: Mutex<DenseCache>,
}

/// Each user's dense chunks, by user id.
type DenseCache = HashMap<String, Arc<UserChunks>>;

/// One user's dense chunks.
struct UserChunks {
    chunks: Vec<DenseChunk>,
    /// Manual id → chunk number → position in `chunks`.
    positions: HashMap<String, HashMap<u64, usize>>,
    /// Manual id → its subject: its name and what runs along most of its pages.
    subjects: Arc<HashMap<String, String>>,
    /// How often each word occurs, counted on first use (only spoken questions need it).
    words: std::sync::OnceLock<Arc<HashMap<String, usize>>>,
}

impl UserChunks {
    fn new(chunks: Vec<DenseChunk>, subjects: HashMap<String, String>) -> Self {
        let mut positions: HashMap<String, HashMap<u64, usize>> = HashMap::new();
        for (position, chunk) in chunks.iter().enumerate() {
            positions
                .entry(chunk.hit.manual_id.clone())
                .or_default()
                .insert(chunk.hit.chunk, position);
        }
        Self {
            chunks,
            positions,
            subjects: Arc::new(subjects),
            words: std::sync::OnceLock::new(),
        }
    }

    fn word_counts(&self) -> Arc<HashMap<String, usize>> {
        Arc::clone(self.words.get_or_init(|| {
            let mut counts: HashMap<String, usize> = HashMap::new();
            for chunk in &self.chunks {
                for word in chunk
                    .hit
                    .text
                    .split(|c: char| !c.is_alphanumeric())
                    .filter(|word| !word.is_empty())
                {
                    *counts.entry(word.to_owned()).or_default() += 1;
                }
            }
            Arc::new(counts)
        }))
    }
}

/// What the dense search found: its best chunks, and the similarity of every chunk it
/// considered, which the answerer is handed with each passage.
struct DenseRanking {
    best: Vec<Hit>,
    chunks: Arc<UserChunks>,
    /// Parallel to `chunks.chunks`: `None` for a chunk outside the searched manuals.
    similarities: Vec<Option<f32>>,
}

impl DenseRanking {
    fn similarity(&self, hit: &Hit) -> Option<f32> {
        let position = *self.chunks.positions.get(&hit.manual_id)?.get(&hit.chunk)?;
        self.similarities.get(position).copied().flatten()
    }
}

/// One chunk as the dense search sees it.
struct DenseChunk {
    hit: Hit,
    /// One embedding per window of the text ([`embedding::windows`]).
    vectors: Vec<Vec<f32>>,
}

/// A chunk found by one of the two searches, before fusion.
#[derive(Clone)]
struct Hit {
    manual_id: String,
    chunk: u64,
    page: u32,
    text: String,
}

impl Hit {
    /// The chunk a stored document holds; `None` for a document missing its id or text.
    fn read(document: &TantivyDocument, fields: Fields) -> Option<Self> {
        let text_of = |field: Field| {
            document
                .get_first(field)
                .and_then(|value| value.as_str())
                .map(str::to_owned)
        };
        let number = |field: Field| document.get_first(field).and_then(|v| v.as_u64());
        Some(Self {
            manual_id: text_of(fields.manual_id)?,
            chunk: number(fields.chunk).unwrap_or(0),
            page: number(fields.page)
                .and_then(|page| u32::try_from(page).ok())
                .unwrap_or(1),
            text: text_of(fields.text)?,
        })
    }
}

fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(
            StopWordFilter::new(Language::English)
                .unwrap_or_else(|| StopWordFilter::remove(Vec::<String>::new())),
        )
        .filter(Stemmer::new(Language::English))
        .build()
}

fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let analysed = TextFieldIndexing::default()
        .set_tokenizer(ANALYZER)
        .set_index_option(IndexRecordOption::WithFreqsAndPositions);
    let fields = Fields {
        user: builder.add_text_field("user", STRING),
        owner_manual: builder.add_text_field("owner_manual", STRING),
        manual_id: builder.add_text_field("manual_id", STRING | tantivy::schema::STORED),
        page: builder.add_u64_field("page", NumericOptions::default().set_stored()),
        text: builder.add_text_field(
            "text",
            TextOptions::default()
                .set_indexing_options(analysed.clone())
                .set_stored(),
        ),
        title: builder.add_text_field(
            "title",
            TextOptions::default().set_indexing_options(analysed),
        ),
        // The manual's name and what runs along most of its pages (removed from their text):
        // stored on each chunk so the answerer can count it as said on every page.
        subject: builder.add_text_field("subject", tantivy::schema::STORED),
        chunk: builder.add_u64_field("chunk", NumericOptions::default().set_stored()),
        // Named after the model that computed the vectors: an index of another model's vectors
        // has another schema, so it is rebuilt (re-embedded) on start rather than mixed.
        vector: builder.add_bytes_field("vector_minilm_int8", BytesOptions::default().set_stored()),
    };
    (builder.build(), fields)
}

fn owner_manual(user: &UserId, manual_id: &str) -> String {
    format!("{}/{}", user.as_str(), manual_id)
}

/// What opening the index found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opened {
    /// The index was there in the current format (or is new and empty).
    Current,
    /// An index in an older format was replaced by an empty one: every manual must be
    /// indexed again.
    Rebuilt,
}

impl LocalIndex {
    pub fn open(dir: &Path, embedder: Arc<Embedder>) -> Result<(Self, Opened), PortError> {
        std::fs::create_dir_all(dir).map_err(PortError::failed)?;
        let (schema, fields) = schema();
        let mut opened = Opened::Current;
        let directory = MmapDirectory::open(dir).map_err(PortError::failed)?;
        let index = match Index::open_or_create(directory, schema.clone()) {
            Ok(index) => index,
            // An index written by an older version (another schema): it is rebuilt from the
            // stored manuals rather than refused.
            Err(tantivy::TantivyError::SchemaError(reason)) => {
                tracing::warn!(%reason, "the search index has an older format; rebuilding it");
                std::fs::remove_dir_all(dir).map_err(PortError::failed)?;
                std::fs::create_dir_all(dir).map_err(PortError::failed)?;
                opened = Opened::Rebuilt;
                let directory = MmapDirectory::open(dir).map_err(PortError::failed)?;
                Index::open_or_create(directory, schema).map_err(PortError::failed)?
            }
            Err(error) => return Err(PortError::failed(error)),
        };
        index.tokenizers().register(ANALYZER, analyzer());
        let writer = index
            .writer_with_num_threads(1, WRITER_MEMORY_BYTES)
            .map_err(PortError::failed)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(PortError::failed)?;
        let index = Self {
            inner: Arc::new(Inner {
                reader,
                writer: Mutex::new(writer),
                fields,
                analyzer: analyzer(),
                embedder,
                dense: Mutex::new(HashMap::new()),
            }),
        };
        Ok((index, opened))
    }

    /// How often each word (case kept) occurs in `user`'s indexed manuals: the vocabulary the
    /// speech recogniser is primed with.
    pub async fn word_counts(
        &self,
        user: &UserId,
    ) -> Result<Arc<HashMap<String, usize>>, PortError> {
        let user = user.clone();
        self.blocking(move |inner| Ok(inner.dense_chunks(&user)?.word_counts()))
            .await
    }

    /// Manual id → its subject (name and running title), for each of `user`'s manuals.
    pub async fn subjects(&self, user: &UserId) -> Result<Arc<HashMap<String, String>>, PortError> {
        let user = user.clone();
        self.blocking(move |inner| Ok(Arc::clone(&inner.dense_chunks(&user)?.subjects)))
            .await
    }

    /// Question-word weights over `user`'s chunks only, for the extractive answerer.
    pub fn term_weights(&self, user: &UserId) -> UserTermWeights {
        let inner = &self.inner;
        let searcher = inner.reader.searcher();
        let user_term = Term::from_field_text(inner.fields.user, user.as_str());
        let total = counted(
            searcher.search(
                &TermQuery::new(user_term.clone(), IndexRecordOption::Basic),
                &Count,
            ),
            "the user's chunks",
        );
        UserTermWeights {
            searcher,
            user_term,
            text: inner.fields.text,
            total: total as f32,
            analyzer: Mutex::new(inner.analyzer.clone()),
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner) -> Result<T, PortError> + Send + 'static,
    ) -> Result<T, PortError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || work(&inner))
            .await
            .map_err(PortError::failed)?
    }
}

impl LocalIndex {
    /// Replaces what was indexed for `manual` with `chunks`, already embedded. `running_title`
    /// is what ran along most of its pages ([`manuel_process_manual::furniture`]); with the
    /// manual's name it is the manual's subject, searched (a little) on every chunk so it picks
    /// the manual without favouring any one page.
    pub async fn store(
        &self,
        manual: &Manual,
        chunks: Vec<PreparedChunk>,
        running_title: &str,
    ) -> Result<(), PortError> {
        let user = manual.user_id.clone();
        let manual_id = manual.id.clone();
        let subject = format!("{} {running_title}", manual.name);
        self.blocking(move |inner| {
            let fields = inner.fields;
            let mut writer = inner.lock_writer()?;
            writer.delete_term(Term::from_field_text(
                fields.owner_manual,
                &owner_manual(&user, &manual_id),
            ));
            for (number, chunk) in chunks.iter().enumerate() {
                writer
                    .add_document(doc!(
                        fields.user => user.as_str(),
                        fields.owner_manual => owner_manual(&user, &manual_id),
                        fields.manual_id => manual_id.as_str(),
                        fields.page => u64::from(chunk.page),
                        fields.text => chunk.text.as_str(),
                        fields.title => subject.as_str(),
                        fields.subject => subject.as_str(),
                        fields.chunk => number as u64,
                        fields.vector => embedding::to_bytes(&chunk.vectors),
                    ))
                    .map_err(PortError::failed)?;
            }
            inner.commit(&mut writer, &user)
        })
        .await
    }
}

/// One search passage with its embeddings, ready to be indexed.
#[derive(Clone, Debug, PartialEq)]
pub struct PreparedChunk {
    pub page: u32,
    pub text: String,
    /// One embedding per window of the text ([`embedding::windows`]).
    pub vectors: Vec<Vec<f32>>,
}

/// Embeds `chunks`. CPU-bound: run it off the async runtime (the server runs it in the ingest
/// worker process).
pub fn prepare(
    embedder: &Embedder,
    chunks: &[crate::chunk::Chunk],
) -> Result<Vec<PreparedChunk>, PortError> {
    let windows: Vec<Vec<String>> = chunks
        .iter()
        .map(|chunk| embedding::windows(&chunk.text))
        .collect();
    let flat: Vec<&str> = windows.iter().flatten().map(String::as_str).collect();
    let mut embedded = embedder
        .embed(&flat)
        .map_err(PortError::failed)?
        .into_iter();
    Ok(chunks
        .iter()
        .zip(&windows)
        .map(|(chunk, of_chunk)| PreparedChunk {
            page: chunk.page,
            text: chunk.text.clone(),
            vectors: embedded.by_ref().take(of_chunk.len()).collect(),
        })
        .collect())
}

impl Inner {
    fn analyse(&self, text: &str) -> Vec<String> {
        let mut analyzer = self.analyzer.clone();
        let mut stream = analyzer.token_stream(text);
        let mut terms: Vec<String> = Vec::new();
        while stream.advance() {
            let term = stream.token().text.clone();
            if !terms.contains(&term) {
                terms.push(term);
            }
        }
        terms
    }

    /// The question's analysed terms that manuals say otherwise, each with the analysed
    /// terms manuals use for it ("heavi" → ["weight"]).
    fn manual_words(&self, question: &str) -> HashMap<String, Vec<String>> {
        manual_words_for(question)
            .into_iter()
            .filter_map(|(asked, said)| {
                let asked = self.analyse(asked).into_iter().next()?;
                let said = said.iter().flat_map(|word| self.analyse(word)).collect();
                Some((asked, said))
            })
            .collect()
    }

    /// The distinct analysed terms of a passage (`analyse` keeps their order, for questions).
    fn term_set(&self, text: &str) -> HashSet<String> {
        let mut analyzer = self.analyzer.clone();
        let mut stream = analyzer.token_stream(text);
        let mut terms = HashSet::new();
        while stream.advance() {
            terms.insert(stream.token().text.clone());
        }
        terms
    }

    fn commit(&self, writer: &mut IndexWriter, user: &UserId) -> Result<(), PortError> {
        writer.commit().map_err(PortError::failed)?;
        self.reader.reload().map_err(PortError::failed)?;
        self.lock_dense()?.remove(user.as_str());
        Ok(())
    }

    fn lock_dense(&self) -> Result<std::sync::MutexGuard<'_, DenseCache>, PortError> {
        self.dense
            .lock()
            .map_err(|_| PortError::failed("the dense cache lock was poisoned"))
    }

    fn question_vector(&self, question: &str) -> Result<Vec<f32>, PortError> {
        self.embedder
            .embed_question(question)
            .map_err(PortError::failed)
    }

    /// `user`'s chunks with their embeddings, read from the index once and kept.
    fn dense_chunks(&self, user: &UserId) -> Result<Arc<UserChunks>, PortError> {
        if let Some(chunks) = self.lock_dense()?.get(user.as_str()) {
            return Ok(Arc::clone(chunks));
        }
        let fields = self.fields;
        let searcher = self.reader.searcher();
        let addresses = searcher
            .search(
                &TermQuery::new(
                    Term::from_field_text(fields.user, user.as_str()),
                    IndexRecordOption::Basic,
                ),
                &DocSetCollector,
            )
            .map_err(PortError::failed)?;
        let mut chunks = Vec::with_capacity(addresses.len());
        let mut subjects = HashMap::new();
        for address in addresses {
            let document: TantivyDocument = searcher.doc(address).map_err(PortError::failed)?;
            let vectors = document
                .get_first(fields.vector)
                .and_then(|value| value.as_bytes())
                .and_then(embedding::from_bytes);
            if let (Some(hit), Some(vectors)) = (Hit::read(&document, fields), vectors) {
                if !subjects.contains_key(&hit.manual_id) {
                    let subject = document
                        .get_first(fields.subject)
                        .and_then(|value| value.as_str())
                        .unwrap_or_default();
                    subjects.insert(hit.manual_id.clone(), subject.to_owned());
                }
                chunks.push(DenseChunk { hit, vectors });
            }
        }
        let chunks = Arc::new(UserChunks::new(chunks, subjects));
        self.lock_dense()?
            .insert(user.as_str().to_owned(), Arc::clone(&chunks));
        Ok(chunks)
    }

    /// The best `n` chunks of `user` by similarity to the question's embedding.
    fn dense_search(
        &self,
        user: &UserId,
        question: &[f32],
        manual_ids: Option<&[String]>,
        n: usize,
    ) -> Result<DenseRanking, PortError> {
        let chunks = self.dense_chunks(user)?;
        let similarities: Vec<Option<f32>> = chunks
            .chunks
            .iter()
            .map(|c| {
                manual_ids
                    .is_none_or(|ids| ids.contains(&c.hit.manual_id))
                    .then(|| embedding::best_similarity(question, &c.vectors))
            })
            .collect();
        let mut scored: Vec<(f32, usize)> = similarities
            .iter()
            .enumerate()
            .filter_map(|(position, similarity)| similarity.map(|s| (s, position)))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        let best = scored
            .into_iter()
            .take(n)
            .map(|(_, position)| chunks.chunks[position].hit.clone())
            .collect();
        Ok(DenseRanking {
            best,
            chunks,
            similarities,
        })
    }

    fn lock_writer(&self) -> Result<std::sync::MutexGuard<'_, IndexWriter>, PortError> {
        self.writer
            .lock()
            .map_err(|_| PortError::failed("the index writer lock was poisoned"))
    }
}

impl Inner {
    /// The question's distinct terms with their idf over the whole index.
    fn weighted_terms(&self, question: &str) -> Vec<(String, f32)> {
        let searcher = self.reader.searcher();
        let documents = searcher.num_docs() as f32;
        self.analyse(question)
            .into_iter()
            .map(|term| {
                let frequency = searcher
                    .doc_freq(&Term::from_field_text(self.fields.text, &term))
                    .unwrap_or(0) as f32;
                let idf = (1.0 + (documents - frequency + 0.5) / (frequency + 0.5)).ln();
                (term, idf)
            })
            .collect()
    }

    /// How relevant a passage is, 0–1, as a person reads it: half the share of the question's
    /// words (weighted by rarity) the passage or its manual's subject (name, running title)
    /// contains; half its closeness in meaning. A fused rank value (~0.03 whatever the match)
    /// tells a reader nothing.
    fn relevance(
        &self,
        question_terms: &[(String, f32)],
        chunk: &RetrievedChunk,
        subject_terms: &HashSet<String>,
        manual_words: &HashMap<String, Vec<String>>,
    ) -> f32 {
        let total: f32 = question_terms.iter().map(|(_, idf)| idf).sum();
        let words = if total > 0.0 {
            let present = self.term_set(&chunk.text);
            question_terms
                .iter()
                .filter(|(term, _)| {
                    present.contains(term)
                        || subject_terms.contains(term)
                        || manual_words
                            .get(term)
                            .is_some_and(|said| said.iter().any(|t| present.contains(t)))
                })
                .map(|(_, idf)| idf)
                .sum::<f32>()
                / total
        } else {
            0.0
        };
        let meaning = chunk.similarity.unwrap_or(0.0).clamp(0.0, 1.0);
        (0.5 * words + 0.5 * meaning).clamp(0.0, 1.0)
    }

    /// The best `n` chunks of `user` by BM25 over text (and, a little, the manual's name).
    fn bm25_search(
        &self,
        user: &UserId,
        question: &str,
        manual_ids: Option<&[String]>,
        n: usize,
    ) -> Result<Vec<Hit>, PortError> {
        let fields = self.fields;
        let terms = self.analyse(question);
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let mut words: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for term in &terms {
            words.push((
                Occur::Should,
                Box::new(TermQuery::new(
                    Term::from_field_text(fields.text, term),
                    IndexRecordOption::WithFreqs,
                )),
            ));
            words.push((
                Occur::Should,
                Box::new(BoostQuery::new(
                    Box::new(TermQuery::new(
                        Term::from_field_text(fields.title, term),
                        IndexRecordOption::WithFreqs,
                    )),
                    TITLE_BOOST,
                )),
            ));
        }
        for said in self.manual_words(question).into_values().flatten() {
            if !terms.contains(&said) {
                words.push((
                    Occur::Should,
                    Box::new(BoostQuery::new(
                        Box::new(TermQuery::new(
                            Term::from_field_text(fields.text, &said),
                            IndexRecordOption::WithFreqs,
                        )),
                        MANUAL_WORD_BOOST,
                    )),
                ));
            }
        }
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![
            (
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(fields.user, user.as_str()),
                    IndexRecordOption::Basic,
                )),
            ),
            (Occur::Must, Box::new(BooleanQuery::new(words))),
        ];
        if let Some(ids) = manual_ids {
            let within: Vec<(Occur, Box<dyn Query>)> = ids
                .iter()
                .map(|id| {
                    (
                        Occur::Should,
                        Box::new(TermQuery::new(
                            Term::from_field_text(fields.manual_id, id),
                            IndexRecordOption::Basic,
                        )) as Box<dyn Query>,
                    )
                })
                .collect();
            clauses.push((Occur::Must, Box::new(BooleanQuery::new(within))));
        }
        let query = BooleanQuery::new(clauses);
        let searcher = self.reader.searcher();
        let top = searcher
            .search(&query, &TopDocs::with_limit(n).order_by_score())
            .map_err(PortError::failed)?;
        let mut hits = Vec::with_capacity(top.len());
        for (_, address) in top {
            let document: TantivyDocument = searcher.doc(address).map_err(PortError::failed)?;
            hits.extend(Hit::read(&document, fields));
        }
        Ok(hits)
    }
}

/// Reciprocal rank fusion of rankings of the same chunks: best first, with the fused score.
fn fuse(
    rankings: Vec<Vec<Hit>>,
    limit: usize,
    similarity: impl Fn(&Hit) -> Option<f32>,
) -> Vec<RetrievedChunk> {
    let mut fused: HashMap<(String, u64), (f32, usize, Hit)> = HashMap::new();
    let mut order = 0;
    for ranking in rankings {
        for (rank, hit) in ranking.into_iter().enumerate() {
            let contribution = 1.0 / (RRF_K + rank as f32 + 1.0);
            let key = (hit.manual_id.clone(), hit.chunk);
            order += 1;
            fused
                .entry(key)
                .and_modify(|(score, _, _)| *score += contribution)
                .or_insert((contribution, order, hit));
        }
    }
    let mut chunks: Vec<(f32, usize, Hit)> = fused.into_values().collect();
    // Ties keep the order the rankings gave (BM25's first), so results are deterministic.
    chunks.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    chunks
        .into_iter()
        .take(limit)
        .map(|(score, _, hit)| RetrievedChunk {
            similarity: similarity(&hit),
            manual_id: hit.manual_id,
            page: hit.page,
            text: hit.text,
            score,
        })
        .collect()
}

#[async_trait]
impl KnowledgeBase for LocalIndex {
    /// Chunks the pages, embeds every chunk, and replaces what was indexed for the manual. The
    /// manual stays `processing` until this returns, vectors included. (The server does this in
    /// an ingest worker process and calls [`LocalIndex::store`]; this in-process path serves
    /// tests and tools.)
    async fn ingest(&self, manual: &Manual, pages: &[String]) -> Result<(), PortError> {
        let chunks = chunk_pages(pages);
        let embedder = Arc::clone(&self.inner.embedder);
        let prepared = tokio::task::spawn_blocking(move || prepare(&embedder, &chunks))
            .await
            .map_err(PortError::failed)??;
        self.store(manual, prepared, "").await
    }

    async fn retrieve(
        &self,
        user: &UserId,
        question: &str,
        manual_ids: Option<&[String]>,
        limit: usize,
    ) -> Result<Vec<RetrievedChunk>, PortError> {
        let user = user.clone();
        let question = question.to_owned();
        let manual_ids: Option<Vec<String>> = manual_ids.map(<[String]>::to_vec);
        self.blocking(move |inner| {
            if question.trim().is_empty()
                || limit == 0
                || manual_ids.as_ref().is_some_and(Vec::is_empty)
            {
                return Ok(Vec::new());
            }
            let pool = (limit * POOL_FACTOR).max(MIN_POOL);
            let ids = manual_ids.as_deref();
            let lexical = inner.bm25_search(&user, &question, ids, pool)?;
            let vector = inner.question_vector(&question)?;
            let mut semantic = inner.dense_search(&user, &vector, ids, pool)?;
            let best = std::mem::take(&mut semantic.best);
            let mut fused = fuse(vec![lexical, best], limit, |hit| semantic.similarity(hit));
            let question_terms = inner.weighted_terms(&question);
            let manual_words = inner.manual_words(&question);
            // Each manual's subject is analysed once, not once per passage.
            let mut subject_terms: HashMap<String, HashSet<String>> =
                HashMap::new();
            for chunk in &mut fused {
                let subject = subject_terms
                    .entry(chunk.manual_id.clone())
                    .or_insert_with(|| {
                        let subject = semantic.chunks.subjects.get(&chunk.manual_id);
                        inner.term_set(subject.map_or("", String::as_str))
                    });
                chunk.score = inner.relevance(&question_terms, chunk, subject, &manual_words);
            }
            // What the answerer is given, for tuning against `make eval`
            // (RUST_LOG=manuel_local::index=debug).
            for (rank, chunk) in fused.iter().enumerate() {
                tracing::debug!(rank, manual = %chunk.manual_id, page = chunk.page, score = chunk.score, "retrieved");
            }
            Ok(fused)
        })
        .await
    }

    async fn remove(&self, manual: &Manual) -> Result<(), PortError> {
        let key = owner_manual(&manual.user_id, &manual.id);
        let user = manual.user_id.clone();
        self.blocking(move |inner| {
            let mut writer = inner.lock_writer()?;
            writer.delete_term(Term::from_field_text(inner.fields.owner_manual, &key));
            inner.commit(&mut writer, &user)
        })
        .await
    }

    /// Local ingestion is told each manual's owner by its queue; nothing looks files up by key.
    async fn owner_of(&self, _key: &str) -> Result<Option<UserId>, PortError> {
        Ok(None)
    }

    async fn chunk_count(&self, manual: &Manual) -> Result<Option<u64>, PortError> {
        let key = owner_manual(&manual.user_id, &manual.id);
        self.blocking(move |inner| {
            let query = TermQuery::new(
                Term::from_field_text(inner.fields.owner_manual, &key),
                IndexRecordOption::Basic,
            );
            let count = inner
                .reader
                .searcher()
                .search(&query, &Count)
                .map_err(PortError::failed)?;
            Ok(Some(count as u64))
        })
        .await
    }
}

/// BM25-style idf of question words, computed over one user's chunks.
pub struct UserTermWeights {
    searcher: Searcher,
    user_term: Term,
    text: Field,
    total: f32,
    analyzer: Mutex<TextAnalyzer>,
}

impl UserTermWeights {
    /// How many of the user's chunks contain `term`.
    fn document_frequency(&self, term: &str) -> usize {
        let query = BooleanQuery::new(vec![
            (
                Occur::Must,
                Box::new(TermQuery::new(
                    self.user_term.clone(),
                    IndexRecordOption::Basic,
                )) as Box<dyn Query>,
            ),
            (
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(self.text, term),
                    IndexRecordOption::Basic,
                )),
            ),
        ]);
        counted(self.searcher.search(&query, &Count), "a term's chunks")
    }
}

/// A count the answerer weighs words by. A failed search counts 0 (the question is then
/// answered with less to go on, or refused), so it is logged and counted, never silent.
fn counted(result: tantivy::Result<usize>, what: &'static str) -> usize {
    result.unwrap_or_else(|error| {
        tracing::error!(%error, what, "search index count failed: taken as 0");
        manuel_core::telemetry::record_dependency(
            manuel_core::telemetry::Metric::DependencyErrors,
            "search-index",
            1.0,
        );
        0
    })
}

impl TermWeights for UserTermWeights {
    fn terms(&self, text: &str) -> Vec<String> {
        let Ok(mut analyzer) = self.analyzer.lock() else {
            return Vec::new();
        };
        let mut stream = analyzer.token_stream(text);
        let mut terms = Vec::new();
        while stream.advance() {
            terms.push(stream.token().text.clone());
        }
        terms
    }

    fn idf(&self, term: &str) -> f32 {
        let frequency = self.document_frequency(term) as f32;
        (1.0 + (self.total - frequency + 0.5) / (frequency + 0.5)).ln()
    }

    fn known(&self, term: &str) -> bool {
        self.document_frequency(term) > 0
    }

    fn passages_with(&self, term: &str) -> usize {
        self.document_frequency(term)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(manual: &str, chunk: u64) -> Hit {
        Hit {
            manual_id: manual.to_owned(),
            chunk,
            page: u32::try_from(chunk).unwrap_or(1),
            text: format!("{manual}-{chunk}"),
        }
    }

    #[test]
    fn reciprocal_rank_fusion_rewards_agreement_and_keeps_order_on_ties() {
        let lexical = vec![hit("a", 1), hit("a", 2), hit("b", 7)];
        let semantic = vec![hit("b", 7), hit("a", 2), hit("c", 3)];
        let similarities = HashMap::from([(("b".to_owned(), 7), 0.8), (("a".to_owned(), 2), 0.5)]);
        let similarity = |hit: &Hit| {
            similarities
                .get(&(hit.manual_id.clone(), hit.chunk))
                .copied()
        };
        let fused = fuse(vec![lexical, semantic], 10, similarity);
        let order: Vec<&str> = fused.iter().map(|c| c.text.as_str()).collect();
        // a-2 and b-7 are in both lists: ranks (3, 1) beat (2, 2) by a hair, and both beat a
        // chunk only one list found, however high.
        assert_eq!(order, ["b-7", "a-2", "a-1", "c-3"]);
        assert!(fused.windows(2).all(|pair| pair[0].score >= pair[1].score));
        // Each passage carries the similarity the dense search computed for it, if any.
        let carried: Vec<Option<f32>> = fused.iter().map(|c| c.similarity).collect();
        assert_eq!(carried, [Some(0.8), Some(0.5), None, None]);
        assert_eq!(
            fuse(vec![vec![hit("a", 1)], Vec::new()], 0, |_| None).len(),
            0
        );
        // The same chunk from both lists is one result.
        let once = fuse(vec![vec![hit("a", 1)], vec![hit("a", 1)]], 10, |_| None);
        assert_eq!(once.len(), 1);
    }
}
