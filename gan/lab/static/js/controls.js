// The settings inputs: built from the server's choices and ranges, each change sent as a
// `set` message; an input stays marked pending until the server's state confirms its value.

const GROUPS = {
  'model-settings': [['model.depth', 'hidden layers'], ['model.hidden', 'neurons'],
    ['model.activation', 'activation'], ['model.noise_dim', 'noise dims'],
    ['model.noise', 'noise'], ['model.d_fourier', 'D Fourier features'],
    ['model.d_fourier_scale', 'Fourier σ'], ['data.batch_size', 'batch size'], ['seed', 'seed']],
  'g-settings': [['optim.g_name', 'optimiser'], ['optim.g_lr', 'learning rate'],
    ['train.n_g', 'G steps / round']],
  'd-settings': [['optim.d_name', 'optimiser'], ['optim.d_lr', 'learning rate'],
    ['train.n_d', 'D steps / round']],
  'loss-settings': [['loss.name', 'loss'], ['loss.gp_weight', 'GP weight'],
    ['loss.r1_gamma', 'R1 γ'], ['loss.r1_every', 'R1 every k rounds']],
};

export class Controls {
  constructor(send) {
    this.send = send;
    this.inputs = {};
  }

  build(hello) {
    for (const [group, items] of Object.entries(GROUPS)) {
      const box = document.getElementById(group);
      box.replaceChildren();
      for (const [key, label] of items) {
        const el = this._input(key, hello);
        el.id = 'set-' + key.replace('.', '-');
        el.dataset.key = key;
        const wrap = document.createElement('label');
        wrap.append(label, el);
        if (hello.reset_keys.includes(key)) wrap.title = 'changing this starts a new session';
        box.append(wrap);
        this.inputs[key] = el;
        el.addEventListener('change', () => this._changed(key, el, hello));
      }
    }
  }

  _input(key, hello) {
    const choices = hello.choices[key];
    const range = hello.ranges[key];
    if (choices || (range && range[2] && range[1] - range[0] <= 10)) {
      const el = document.createElement('select');
      const values = choices || [...Array(range[1] - range[0] + 1).keys()].map(i => i + range[0]);
      for (const v of values) el.add(new Option(String(v), String(v)));
      return el;
    }
    const el = document.createElement('input');
    el.type = 'number';
    el.min = range[0]; el.max = range[1];
    el.step = range[2] ? '1' : 'any';
    return el;
  }

  _changed(key, el, hello) {
    const range = hello.ranges[key];
    const value = range ? Number(el.value) : el.value;
    el.classList.add('pending');
    this.send({ type: 'set', key, value });
  }

  // The server's settings in force: every input shows them (pending marks cleared).
  update(settings) {
    for (const [key, el] of Object.entries(this.inputs)) {
      if (!(key in settings)) continue;
      const v = String(settings[key]);
      if (document.activeElement !== el || el.tagName === 'SELECT') {
        if (el.tagName === 'SELECT' && ![...el.options].some(o => o.value === v)) el.add(new Option(v, v));
        el.value = v;
      }
      if (String(el.value) === v || Number(el.value) === Number(settings[key])) el.classList.remove('pending');
    }
  }
}
