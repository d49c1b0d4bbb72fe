import {
  basename,
  formatBytes,
  formatNumber,
  formatSummary,
  isExpandable
} from '../ui/format';

describe('format', () => {
  it('describes a tensor with shape, device and stats, and flags NaN/Inf', () => {
    const text = formatSummary({
      type: 'tensor',
      shape: [2, 12, 197, 197],
      dtype: 'float16',
      device: 'cuda:0',
      numel: 931416,
      min: 0,
      max: 0.98765,
      mean: 0.005076,
      std: 0.0312,
      nan: 3,
      inf: 0
    });
    expect(text).toBe(
      'float16[2, 12, 197, 197] cuda:0  min 0  max 0.9877  mean 0.005076  std 0.0312  NaN 3'
    );
  });

  it('says when a tensor is empty or has no finite values', () => {
    expect(
      formatSummary({
        type: 'array',
        shape: [0],
        dtype: 'float64',
        device: 'cpu',
        numel: 0
      })
    ).toBe('float64[0]  empty');
    expect(formatNumber(null)).toBe('–');
  });

  it('describes containers and other objects', () => {
    expect(formatSummary({ type: 'tuple', class: 'tuple', length: 3 })).toBe(
      'tuple of 3'
    );
    expect(formatSummary({ type: 'scalar', class: 'int', repr: '42' })).toBe(
      '42'
    );
    expect(isExpandable({ type: 'list', length: 2 })).toBe(true);
    expect(isExpandable({ type: 'list', length: 0 })).toBe(false);
    expect(isExpandable({ type: 'object', class: 'Foo', repr: 'Foo()' })).toBe(
      false
    );
  });

  it('formats numbers, sizes and file names', () => {
    expect(formatNumber(1234567.5)).toBe('1.23e+6');
    expect(formatNumber(0.00001234)).toBe('1.23e-5');
    expect(formatNumber(-3)).toBe('-3');
    expect(formatBytes(999)).toBe('999 B');
    expect(formatBytes(55_900_000)).toBe('55.9 MB');
    expect(
      basename('/usr/lib/python3.11/site-packages/timm/models/vit.py')
    ).toBe('vit.py');
    expect(basename('C:\\models\\vit.py')).toBe('vit.py');
  });
});
