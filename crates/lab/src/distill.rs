//! The distillation room: SDRRL's idea (Zhang et al., ACL 2024) at toy scale, trained live. The
//! loaded model is the teacher; it answers in the resource-rich language — here it continues each
//! English sentence of the parallel rows — and a small student, a fresh 2-layer llama of the same
//! family sharing the teacher's tokenizer, learns to give that answer when it reads the
//! *target-language* sentence instead. The supervision is the teacher's next-token distribution
//! (its top-k, renormalised) at every answer position — sequence-level knowledge distillation with
//! soft targets — so the student is pulled toward the teacher's English knowledge through a
//! target-language input, which is what SDRRL's transfer set does with real instructions.
//!
//! Loss per answer position t: −Σ_k p̃_teacher(k | English, a<t) · log q_student(k | target, a<t).
//!
//! The student speaks only the tokens its lessons use ([`LessonVocabulary`]: vocabulary
//! trimming, Ushio et al. 2023, "An Efficient Multilingual Language Model Compression through
//! Vocabulary Trimming"). With the teacher's 49 152-token vocabulary, a 64-wide student spends
//! almost all of a step on its embedding and head (a 49 152-way softmax at every position, AdamW
//! over 3.1 M embedding values); a dozen lessons use about two thousand tokens, and every
//! probability the loss compares lives among them (the teacher's top-k are renormalised).

use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::activation::{log_softmax, softmax};
use rosetta_model::burn::prelude::*;
use rosetta_model::generate::{GenerationConfig, Sampling, generate};
use rosetta_model::readback::to_vec_f32;
use rosetta_model::scoring::scoring_ids;
use rosetta_model::weights::random::RandomWeights;
use rosetta_model::{Architecture, CausalLm, Interventions, ModelConfig, Padding, TextTokenizer, TokenBatch};

use crate::error::{LabError, Result};
use crate::manifest::Manifest;
/// Plain data the page shows: defined beside the page–worker messages.
pub use rosetta_lab_protocol::Sample;

#[derive(Debug, Clone)]
pub struct DistillConfig {
    pub student_layers: usize,
    pub student_hidden: usize,
    /// Tokens of each sentence the teacher and the student read.
    pub prompt_tokens: usize,
    /// Tokens of the teacher's answer the student learns.
    pub answer_tokens: usize,
    /// Teacher probabilities kept per position (the rest of the mass is dropped, then renormalised).
    pub top_k: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    /// Rows kept out of training to show the student's answers on.
    pub held_out: usize,
    pub seed: u64,
}

impl Default for DistillConfig {
    fn default() -> Self {
        DistillConfig {
            student_layers: 2,
            student_hidden: 64,
            prompt_tokens: 16,
            answer_tokens: 8,
            top_k: 16,
            batch_size: 4,
            learning_rate: 3e-3,
            held_out: 2,
            seed: 7,
        }
    }
}

/// One transfer example: the target-language prompt, the teacher's English answer to the English
/// prompt, and its soft targets.
#[derive(Debug, Clone)]
pub struct Lesson {
    pub english: String,
    pub target: String,
    pub target_ids: Vec<u32>,
    pub answer: Vec<u32>,
    /// Per answer position: `(token ids, probabilities)`, `top_k` each, summing to 1.
    pub soft_targets: Vec<(Vec<u32>, Vec<f32>)>,
}

fn truncate(mut ids: Vec<u32>, n: usize) -> Vec<u32> {
    ids.truncate(n.max(2));
    ids
}

/// The teacher's lessons for target language `lang`: greedy answers to the English sentences
/// (one batched generation) and their soft targets (one batched forward, top-k on the device —
/// only `rows × answer × k` numbers come back, whatever the vocabulary). `progress` hears
/// (generated tokens, total).
pub async fn teach(
    teacher: &CausalLm,
    tokenizer: &TextTokenizer,
    manifest: &Manifest,
    lang: &str,
    rows: usize,
    config: &DistillConfig,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<Lesson>> {
    if !manifest.targets().iter().any(|l| l == lang) {
        return Err(LabError::Invalid(format!("`{lang}` is not a target language of this lab (it has {:?})", manifest.targets())));
    }
    if rows <= config.held_out || rows > manifest.parallel.len() {
        return Err(LabError::Invalid(format!(
            "distillation needs between {} and {} rows (asked for {rows})",
            config.held_out + 1,
            manifest.parallel.len()
        )));
    }
    let english = manifest.sentences(&manifest.english);
    let target = manifest.sentences(lang);
    let prompts = (0..rows).map(|i| Ok(truncate(scoring_ids(tokenizer, english[i])?, config.prompt_tokens))).collect::<Result<Vec<_>>>()?;
    let generation = GenerationConfig { max_new_tokens: config.answer_tokens, sampling: Sampling::Greedy, ..GenerationConfig::default() };
    let total = rows * config.answer_tokens;
    let mut generated = 0;
    let output = generate(teacher, &prompts, &generation, &Interventions::none(), |_, _| {
        generated += 1;
        progress(generated.min(total), total);
    })
    .await?;
    let pad = tokenizer.eos_id().unwrap_or(0);
    let answers: Vec<Vec<u32>> = output
        .tokens
        .into_iter()
        .map(|mut a| {
            a.resize(config.answer_tokens, pad);
            a
        })
        .collect();
    // The teacher's distribution at every answer position, given the English prompt.
    let sequences: Vec<Vec<u32>> = prompts.iter().zip(&answers).map(|(p, a)| p.iter().chain(a).copied().collect()).collect();
    let batch = TokenBatch::pad(&sequences, Padding::Right, 0)?;
    let (logits, _) = teacher.forward_with(&batch, &Interventions::none())?;
    let k = config.top_k.min(teacher.config().vocab_size);
    let (probs, ids) = softmax(logits, 2).topk_with_indices(k, 2);
    let probs = to_vec_f32(probs).await?;
    let ids = to_vec_f32(ids.float()).await?;
    let seq = batch.seq;
    let mut lessons = Vec::with_capacity(rows);
    for (i, (prompt, answer)) in prompts.into_iter().zip(answers).enumerate() {
        let start = prompt.len() - 1;
        let soft_targets = (start..start + answer.len())
            .map(|t| {
                let at = (i * seq + t) * k;
                let mass: f32 = probs[at..at + k].iter().sum::<f32>().max(f32::MIN_POSITIVE);
                (ids[at..at + k].iter().map(|&v| v as u32).collect(), probs[at..at + k].iter().map(|p| p / mass).collect())
            })
            .collect();
        lessons.push(Lesson {
            english: english[i].to_string(),
            target: target[i].to_string(),
            target_ids: truncate(scoring_ids(tokenizer, target[i])?, config.prompt_tokens),
            answer,
            soft_targets,
        });
    }
    Ok(lessons)
}

/// The teacher's tokens a student is built with: every token its lessons read, answer or are
/// taught (the teacher's top-k), plus the special tokens generation needs, in teacher-id order.
/// Student id `i` is teacher id `teacher_ids[i]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LessonVocabulary {
    teacher_ids: Vec<u32>,
}

impl LessonVocabulary {
    pub fn of(lessons: &[Lesson], teacher: &ModelConfig) -> Self {
        let lesson_ids = lessons
            .iter()
            .flat_map(|l| l.target_ids.iter().chain(&l.answer).chain(l.soft_targets.iter().flat_map(|(ids, _)| ids.iter())).copied());
        let special = teacher.bos_token_id.into_iter().chain(teacher.eos_token_ids.iter().copied()).chain(teacher.pad_token_id);
        let mut teacher_ids: Vec<u32> = lesson_ids.chain(special).filter(|&id| (id as usize) < teacher.vocab_size).collect();
        teacher_ids.sort_unstable();
        teacher_ids.dedup();
        LessonVocabulary { teacher_ids }
    }

    pub fn len(&self) -> usize {
        self.teacher_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.teacher_ids.is_empty()
    }

    /// The student's id for a teacher token, if the lessons use it.
    pub fn student_id(&self, teacher_id: u32) -> Option<u32> {
        self.teacher_ids.binary_search(&teacher_id).ok().map(|i| i as u32)
    }

    fn student_ids(&self, teacher_ids: &[u32]) -> Result<Vec<u32>> {
        teacher_ids
            .iter()
            .map(|&id| {
                self.student_id(id)
                    .ok_or_else(|| LabError::Invalid(format!("token {id} is not in the student's vocabulary of its lessons")))
            })
            .collect()
    }

    pub fn teacher_id(&self, student_id: u32) -> u32 {
        self.teacher_ids[student_id as usize]
    }
}

/// The student and its optimiser, stepped by the page (start/pause/reset live there).
pub struct Distiller {
    pub config: DistillConfig,
    vocabulary: LessonVocabulary,
    student: Option<CausalLm>,
    optimizer: ModuleOptimizer,
    lessons: Vec<Lesson>,
    pub step: usize,
    /// `(step, training loss)` per step.
    pub losses: Vec<(usize, f64)>,
    cursor: usize,
}

impl Distiller {
    /// A fresh student for `lessons` on `device` (the autodiff wrapper is added here).
    pub fn new(teacher: &ModelConfig, lessons: Vec<Lesson>, config: DistillConfig, device: &Device) -> Result<Self> {
        if lessons.len() <= config.held_out {
            return Err(LabError::Invalid("no lessons left to train on after the held-out rows".into()));
        }
        let heads = 4;
        let vocabulary = LessonVocabulary::of(&lessons, teacher);
        let special = |id: Option<u32>| id.and_then(|id| vocabulary.student_id(id));
        let student_config = ModelConfig {
            architecture: Architecture::Llama,
            vocab_size: vocabulary.len(),
            hidden_size: config.student_hidden,
            intermediate_size: config.student_hidden * 2,
            num_hidden_layers: config.student_layers,
            num_attention_heads: heads,
            num_key_value_heads: heads / 2,
            head_dim: config.student_hidden / heads,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            rope_scaling: None,
            max_position_embeddings: config.prompt_tokens + config.answer_tokens + 8,
            tie_word_embeddings: true,
            qkv_bias: false,
            o_bias: false,
            mlp_bias: false,
            sliding_window: None,
            bos_token_id: special(teacher.bos_token_id),
            eos_token_ids: teacher.eos_token_ids.iter().filter_map(|&id| special(Some(id))).collect(),
            pad_token_id: special(teacher.pad_token_id),
            torch_dtype: None,
        };
        let student =
            CausalLm::from_source(&student_config, &RandomWeights::new(&student_config, config.seed, 0.02), &device.clone().autodiff())?;
        let optimizer = AdamWConfig::new().with_weight_decay(0.0).init();
        Ok(Distiller { config, vocabulary, student: Some(student), optimizer, lessons, step: 0, losses: Vec::new(), cursor: 0 })
    }

    pub fn vocabulary(&self) -> &LessonVocabulary {
        &self.vocabulary
    }

    pub fn training_lessons(&self) -> &[Lesson] {
        &self.lessons[..self.lessons.len() - self.config.held_out]
    }

    pub fn held_out_lessons(&self) -> &[Lesson] {
        &self.lessons[self.lessons.len() - self.config.held_out..]
    }

    /// The student; `None` only inside [`Self::train_step`], where the optimizer owns it, so a
    /// failed step is reported, not a panic.
    fn student(&self) -> Result<&CausalLm> {
        self.student.as_ref().ok_or_else(|| LabError::Invalid("the student was lost in a failed training step: press Reset".into()))
    }

    /// The soft cross-entropy of the student on `lessons` (autodiff graph attached).
    fn loss(&self, lessons: &[&Lesson]) -> Result<Tensor<1>> {
        let student = self.student()?;
        let device = student.device();
        let k = self.config.top_k;
        let sequences: Vec<Vec<u32>> = lessons
            .iter()
            .map(|l| self.vocabulary.student_ids(&l.target_ids.iter().chain(&l.answer).copied().collect::<Vec<_>>()))
            .collect::<Result<_>>()?;
        let batch = TokenBatch::pad(&sequences, Padding::Right, 0)?;
        let (b, s) = (batch.batch, batch.seq);
        // Position p predicts token p+1: the answer starts after the last prompt token.
        let mut ids = vec![0i64; b * s * k];
        let mut weights = vec![0f32; b * s * k];
        for (row, lesson) in lessons.iter().enumerate() {
            let start = lesson.target_ids.len() - 1;
            for (t, (tokens, probs)) in lesson.soft_targets.iter().enumerate() {
                let at = (row * s + start + t) * k;
                for (j, &token) in self.vocabulary.student_ids(tokens)?.iter().take(k).enumerate() {
                    ids[at + j] = token as i64;
                    weights[at + j] = probs[j];
                }
            }
        }
        let positions: usize = lessons.iter().map(|l| l.soft_targets.len()).sum();
        let ids = Tensor::<3, Int>::from_data(TensorData::new(ids, [b, s, k]), &device);
        let weights = Tensor::<3>::from_data(TensorData::new(weights, [b, s, k]), &device);
        let logprobs = log_softmax(student.forward(&batch), 2).gather(2, ids);
        Ok((logprobs * weights).sum().neg().div_scalar(positions.max(1) as f32))
    }

    /// One optimiser step on the next batch of training lessons; returns its loss.
    pub async fn train_step(&mut self) -> Result<f64> {
        let train = self.training_lessons().len();
        let picked: Vec<usize> = (0..self.config.batch_size.min(train)).map(|i| (self.cursor + i) % train).collect();
        self.cursor = (self.cursor + picked.len()) % train;
        let lessons: Vec<&Lesson> = picked.iter().map(|&i| &self.lessons[i]).collect();
        let loss = self.loss(&lessons)?;
        let value = to_vec_f32(loss.clone().detach()).await?[0] as f64;
        if !value.is_finite() {
            return Err(LabError::Invalid(format!(
                "the distillation loss became {value} at step {}: press Reset (a lower learning rate helps)",
                self.step
            )));
        }
        let student =
            self.student.take().ok_or_else(|| LabError::Invalid("the student was lost in a failed training step: press Reset".into()))?;
        let grads = GradientsParams::from_grads(loss.backward(), &student);
        self.student = Some(self.optimizer.step(self.config.learning_rate, student, grads));
        self.step += 1;
        self.losses.push((self.step, value));
        Ok(value)
    }

    /// The soft cross-entropy on the held-out lessons (no gradient).
    pub async fn held_out_loss(&self) -> Result<f64> {
        let lessons: Vec<&Lesson> = self.held_out_lessons().iter().collect();
        Ok(to_vec_f32(self.loss(&lessons)?.detach()).await?[0] as f64)
    }

    /// The student's greedy answers to the held-out target-language prompts.
    pub async fn samples(&self, tokenizer: &TextTokenizer) -> Result<Vec<Sample>> {
        let student = self.student()?.valid();
        let generation =
            GenerationConfig { max_new_tokens: self.config.answer_tokens, sampling: Sampling::Greedy, ..GenerationConfig::default() };
        let lessons = self.held_out_lessons();
        let prompts: Vec<Vec<u32>> = lessons.iter().map(|l| self.vocabulary.student_ids(&l.target_ids)).collect::<Result<_>>()?;
        let output = generate(&student, &prompts, &generation, &Interventions::none(), |_, _| {}).await?;
        lessons
            .iter()
            .zip(output.tokens)
            .map(|(lesson, answer)| {
                let answer: Vec<u32> = answer.iter().map(|&id| self.vocabulary.teacher_id(id)).collect();
                let agreement =
                    lesson.answer.iter().zip(&answer).filter(|(a, b)| a == b).count() as f64 / lesson.answer.len().max(1) as f64;
                Ok(Sample {
                    target: lesson.target.clone(),
                    teacher: tokenizer.decode(&lesson.answer, true)?,
                    student: tokenizer.decode(&answer, true)?,
                    agreement,
                })
            })
            .collect()
    }

    /// The loss curve as an SVG.
    pub fn loss_chart(&self, held_out: &[(usize, f64)]) -> String {
        rosetta_viz::LineChart {
            title: "Student loss (soft cross-entropy to the teacher)".into(),
            x_label: "step".into(),
            y_label: "nats / answer token".into(),
            series: vec![
                rosetta_viz::Series { name: "training".into(), points: self.losses.iter().map(|&(s, l)| (s as f64, l)).collect() },
                rosetta_viz::Series { name: "held out".into(), points: held_out.iter().map(|&(s, l)| (s as f64, l)).collect() },
            ],
            band: None,
        }
        .to_svg()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{tiny_manifest, tiny_model_and_tokenizer};
    use rosetta_model::readback::block_on;
    use rosetta_model::tiny::tiny_config;

    #[test]
    fn the_student_learns_the_teachers_answers() {
        let (teacher, tokenizer) = tiny_model_and_tokenizer(2);
        let manifest = tiny_manifest();
        let config = DistillConfig { batch_size: 4, learning_rate: 1e-2, ..DistillConfig::default() };
        let mut percent = 0;
        let lessons =
            block_on(teach(&teacher, &tokenizer, &manifest, "hu", 6, &config, |done, total| percent = percent.max(done * 100 / total)))
                .unwrap();
        assert_eq!((lessons.len(), percent), (6, 100));
        for lesson in &lessons {
            assert_eq!(lesson.answer.len(), config.answer_tokens);
            for (tokens, probs) in &lesson.soft_targets {
                assert_eq!(tokens.len(), config.top_k);
                assert!((probs.iter().sum::<f32>() - 1.0).abs() < 1e-4);
                assert!(probs.windows(2).all(|w| w[0] >= w[1]));
            }
            // Greedy answers are the teacher's most probable tokens.
            assert_eq!(lesson.soft_targets[0].0[0], lesson.answer[0]);
        }
        let mut distiller = Distiller::new(teacher.config(), lessons, config, &Device::flex()).unwrap();
        assert!(distiller.vocabulary().len() < teacher.config().vocab_size, "the student's vocabulary was not trimmed");
        let before = block_on(distiller.train_step()).unwrap();
        for _ in 0..30 {
            block_on(distiller.train_step()).unwrap();
        }
        let after = distiller.losses.last().unwrap().1;
        assert!(after < before * 0.8, "training loss {before} → {after}");
        assert_eq!(distiller.step, 31);
        let samples = block_on(distiller.samples(&tokenizer)).unwrap();
        assert_eq!(samples.len(), 2);
        assert!(block_on(distiller.held_out_loss()).unwrap().is_finite());
        assert!(distiller.loss_chart(&[(31, 1.0)]).contains("held out"));
    }

    #[test]
    fn the_students_vocabulary_is_what_its_lessons_use() {
        let teacher = ModelConfig { vocab_size: 1000, bos_token_id: Some(1), eos_token_ids: vec![2], pad_token_id: None, ..tiny_config() };
        let lesson = Lesson {
            english: String::new(),
            target: String::new(),
            target_ids: vec![1, 500, 40],
            answer: vec![40, 7],
            soft_targets: vec![(vec![40, 999], vec![0.75, 0.25]), (vec![7, 3], vec![0.5, 0.5])],
        };
        let vocabulary = LessonVocabulary::of(std::slice::from_ref(&lesson), &teacher);
        let ids: Vec<u32> = (0..vocabulary.len() as u32).map(|i| vocabulary.teacher_id(i)).collect();
        assert_eq!(ids, [1, 2, 3, 7, 40, 500, 999]);
        for &id in &ids {
            assert_eq!(vocabulary.teacher_id(vocabulary.student_id(id).unwrap()), id);
        }
        assert_eq!(vocabulary.student_id(4), None);
        assert!(vocabulary.student_ids(&[40, 4]).unwrap_err().to_string().contains("token 4"));
    }

    #[test]
    fn unknown_languages_and_row_counts_are_named() {
        let (teacher, tokenizer) = tiny_model_and_tokenizer(2);
        let manifest = tiny_manifest();
        let config = DistillConfig::default();
        let err = block_on(teach(&teacher, &tokenizer, &manifest, "xx", 6, &config, |_, _| {})).unwrap_err();
        assert!(err.to_string().contains("not a target language"));
        let err = block_on(teach(&teacher, &tokenizer, &manifest, "hu", 1, &config, |_, _| {})).unwrap_err();
        assert!(err.to_string().contains("between 3"));
    }
}
