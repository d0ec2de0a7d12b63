//! The lab's worker: every piece of model work — loading, tokenizing, the rooms' computations,
//! training the student, measuring speed — runs here, in a dedicated Web Worker, so the page's
//! main thread only lays out what comes back ([`crate::protocol`]).
//!
//! The worker runs the same wasm module as the page (`static/worker.js` instantiates it from the
//! compiled module the page sends, so it is downloaded and compiled once). Each request runs as
//! its own task; tasks interleave at their batch boundaries ([`batch_boundary`]), where the worker
//! reads new requests. A request of a [`Lane`] that already has one running cancels the older
//! one: it stops at its next batch boundary, is dropped there and answered [`Reply::Cancelled`], so a
//! slider moved twice computes the first value only up to the next batch. Never anywhere else: a
//! task dropped while it awaits a GPU readback would leave wgpu's staging buffer mapped, and the
//! next submit fails.

mod backend;
mod loader;
mod rooms;
#[cfg(feature = "threads")]
mod threads;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use js_sys::Reflect;
use rosetta_model::TextTokenizer;
use rosetta_model::burn::prelude::Device;
use rosetta_shifcon::{Geometry, ShiftPlan};
use wasm_bindgen::prelude::*;

use crate::distill::Distiller;
use crate::manifest::Manifest;
use crate::protocol::{self, Answer, Envelope, Event, Lane, Message, Reply};
use crate::shift::ShiftBase;
use backend::Backend;
use loader::Loaded;

/// What the worker holds between requests.
#[derive(Default)]
struct State {
    /// Why `static/worker.js` loaded this module (threaded CPU, or WebGPU and one CPU thread).
    module_note: String,
    device: RefCell<Option<Device>>,
    backend: RefCell<Option<Backend>>,
    precision: Cell<rosetta_model::Precision>,
    buffer_limit: Cell<Option<u64>>,
    manifest: RefCell<Option<Rc<Manifest>>>,
    loaded: RefCell<Option<Rc<Loaded>>>,
    /// Bumped on every model load: results computed for an older model are not reused.
    model_serial: Cell<u64>,
    extended: RefCell<Option<Rc<(String, TextTokenizer)>>>,
    /// The shift room's geometry and plan, for the model of that serial.
    geometry: RefCell<Option<(u64, Rc<(Geometry, ShiftPlan)>)>>,
    unshifted: RefCell<Unshifted>,
    distill: RefCell<DistillSlot>,
    /// The running request of each lane and its task's flags.
    lanes: RefCell<HashMap<Lane, (u64, Rc<TaskFlags>)>>,
}

/// What the shift room computes once per model (serial), language and sentence, because the
/// strength does not change it: the residuals below the shift ([`ShiftBase`]) and what strength 0
/// shows, which every slider position shows beside its own.
#[derive(Default)]
struct Unshifted {
    serial: u64,
    /// Per (language, sentence): the sentence's base and its unshifted next-token view.
    sentence: HashMap<(String, usize), (Rc<ShiftBase>, crate::shift::NextTokenView)>,
    /// Per language: the scored sentences' base and their unshifted bits per character.
    sentences: HashMap<String, (Rc<ShiftBase>, f64)>,
}

impl Unshifted {
    fn sentence(&self, serial: u64, lang: &str, sentence: usize, plan: &ShiftPlan) -> Option<(Rc<ShiftBase>, crate::shift::NextTokenView)> {
        let kept = self.sentence.get(&(lang.to_string(), sentence)).filter(|(base, _)| base.serves(plan));
        kept.filter(|_| self.serial == serial).cloned()
    }

    fn sentences(&self, serial: u64, lang: &str, plan: &ShiftPlan) -> Option<(Rc<ShiftBase>, f64)> {
        let kept = self.sentences.get(lang).filter(|(base, _)| base.serves(plan));
        kept.filter(|_| self.serial == serial).cloned()
    }

    fn for_model(&mut self, serial: u64) {
        if self.serial != serial {
            *self = Unshifted { serial, ..Unshifted::default() };
        }
    }

    fn keep_sentence(&mut self, serial: u64, lang: &str, sentence: usize, kept: (Rc<ShiftBase>, crate::shift::NextTokenView)) {
        self.for_model(serial);
        self.sentence.insert((lang.to_string(), sentence), kept);
    }

    fn keep_sentences(&mut self, serial: u64, lang: &str, kept: (Rc<ShiftBase>, f64)) {
        self.for_model(serial);
        self.sentences.insert(lang.to_string(), kept);
    }
}

/// The student between steps. `running` is cleared by Pause; `generation` is bumped by Reset
/// (and by a new model), so a training loop from before stops at its next step.
#[derive(Default)]
struct DistillSlot {
    distiller: Option<(String, Distiller)>,
    running: bool,
    generation: u64,
    held_out: Vec<(usize, f64)>,
}

impl State {
    fn loaded(&self) -> Result<Rc<Loaded>, String> {
        self.loaded.borrow().clone().ok_or_else(|| "no model is loaded yet".to_string())
    }

    fn manifest(&self) -> Result<Rc<Manifest>, String> {
        self.manifest.borrow().clone().ok_or_else(|| "no lab data is served (the manifest is missing)".to_string())
    }

    fn device(&self) -> Result<Device, String> {
        self.device.borrow().clone().ok_or_else(|| "the device is not chosen yet".to_string())
    }

    fn install(&self, loaded: Loaded) {
        *self.loaded.borrow_mut() = Some(Rc::new(loaded));
        self.model_serial.set(self.model_serial.get() + 1);
        *self.geometry.borrow_mut() = None;
        let mut distill = self.distill.borrow_mut();
        *distill = DistillSlot { generation: distill.generation + 1, ..DistillSlot::default() };
    }
}

/// One request's handle on the page: events go out as they happen.
struct Call {
    id: u64,
    state: Rc<State>,
}

impl Call {
    fn event(&self, event: Event) {
        post(&Message { id: self.id, reply: Reply::Event(event) });
    }

    fn status(&self, text: impl Into<String>) {
        self.event(Event::Status(text.into()));
    }

    fn progress(&self, fraction: f64) {
        self.event(Event::Progress(fraction));
    }
}

fn scope() -> web_sys::DedicatedWorkerGlobalScope {
    js_sys::global().unchecked_into()
}

fn post(message: &Message) {
    let _ = scope().post_message(&JsValue::from_str(&protocol::encode(message)));
}

/// A request's task: `cancelled` is set when a newer request of its lane arrives; `stopped` when
/// the task has reached a [`batch_boundary`] after that and parked there.
#[derive(Default)]
struct TaskFlags {
    cancelled: Cell<bool>,
    stopped: Cell<bool>,
}

thread_local! {
    /// The flags of the task being polled (set by [`Cancellable`] around each poll).
    static CURRENT: RefCell<Option<Rc<TaskFlags>>> = const { RefCell::new(None) };
}

/// Ready with `Some` when the request's work is, or with `None` once it stopped at a batch boundary
/// after being cancelled.
struct Cancellable<F> {
    inner: Pin<Box<F>>,
    flags: Rc<TaskFlags>,
    /// Whether its polls keep the pool's other threads awake ([`rosetta_kernels::cpu::pool`]):
    /// the model's passes, yes; the student's steps — many tiny ops, where a spinning thread only
    /// takes a core from the browser's own threads — no (measured: 124 steps/s on one thread, 72
    /// on two with it).
    bursts: bool,
}

impl<F: Future> Future for Cancellable<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.flags.stopped.get() {
            return Poll::Ready(None);
        }
        let previous = CURRENT.with(|c| c.replace(Some(self.flags.clone())));
        // A poll is the request's synchronous compute up to its next await: the pool's other
        // threads stay awake through it (wasm threads; see `rosetta_kernels::cpu::pool`).
        let burst = self.bursts.then(rosetta_kernels::cpu::pool::burst);
        let polled = self.inner.as_mut().poll(cx);
        drop(burst);
        CURRENT.with(|c| *c.borrow_mut() = previous);
        match polled {
            Poll::Ready(value) => Poll::Ready(Some(value)),
            Poll::Pending if self.flags.stopped.get() => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A batch boundary of the worker's work: lets the worker read new requests, then parks the task
/// for good if one of them cancelled it — the only place a task is dropped (see the module's
/// note).
pub async fn batch_boundary() {
    crate::browser::pause().await;
    let flags = CURRENT.with(|c| c.borrow().clone());
    if let Some(flags) = flags
        && flags.cancelled.get()
    {
        flags.stopped.set(true);
        std::future::pending::<()>().await;
    }
}

fn on_message(state: &Rc<State>, data: JsValue) {
    let text = Reflect::get(&data, &"request".into()).ok().and_then(|t| t.as_string()).unwrap_or_default();
    let Envelope { id, request } = match protocol::decode::<Envelope>(&text) {
        Ok(envelope) => envelope,
        Err(e) => return web_sys::console::error_1(&e.into()),
    };
    let files: Vec<web_sys::File> = Reflect::get(&data, &"files".into())
        .ok()
        .filter(|f| f.is_object())
        .map(|f| js_sys::Array::from(&f).iter().filter_map(|f| f.dyn_into().ok()).collect())
        .unwrap_or_default();
    let flags = Rc::new(TaskFlags::default());
    let lane = request.lane();
    if let Some(lane) = lane
        && let Some((_, older)) = state.lanes.borrow_mut().insert(lane, (id, flags.clone()))
    {
        older.cancelled.set(true);
    }
    let call = Call { id, state: state.clone() };
    let state = state.clone();
    wasm_bindgen_futures::spawn_local(async move {
        let bursts = !matches!(request, protocol::Request::DistillStart { .. });
        let work = Cancellable { inner: Box::pin(rooms::handle(&call, request, files)), flags, bursts };
        let reply = match work.await {
            Some(Ok(answer)) => Reply::Done(answer),
            Some(Err(message)) => Reply::Failed(message),
            None => Reply::Cancelled,
        };
        post(&Message { id, reply });
        if let Some(lane) = lane {
            let mut lanes = state.lanes.borrow_mut();
            if lanes.get(&lane).is_some_and(|(current, _)| *current == id) {
                lanes.remove(&lane);
            }
        }
    });
}

/// Called by `static/worker.js` once the module is instantiated in the worker (and, in the
/// threaded module, its thread pool started), with the messages that arrived meanwhile and why it
/// chose this module.
#[wasm_bindgen]
pub fn worker_start(queued: js_sys::Array, module_note: String) {
    crate::browser::run_static_constructors();
    // A panic traps the module; the page hears the message first, then the worker's error event,
    // and says the lab stopped (static/main.js).
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        let note = js_sys::Object::new();
        let _ = Reflect::set(&note, &"panic".into(), &info.to_string().into());
        let _ = scope().post_message(&note);
    }));
    let state = Rc::new(State { module_note, ..State::default() });
    let handler = {
        let state = state.clone();
        Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |event: web_sys::MessageEvent| on_message(&state, event.data()))
    };
    scope().set_onmessage(Some(handler.as_ref().unchecked_ref()));
    // The worker lives as long as the page: its handler does too.
    handler.forget();
    for message in queued.iter() {
        on_message(&state, message);
    }
}

type Handled = Result<Answer, String>;
