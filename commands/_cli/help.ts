// Help with an EXIT CODES section after every command's help and the root help.
import { Command, Help } from '@oclif/core';
import { exitCodeLines } from './exit-codes.js';

export default class ImgstreamHelp extends Help {
  override formatCommand(command: Command.Loadable): string {
    return `${super.formatCommand(command)}\n\n${this.section('EXIT CODES', exitCodeLines().join('\n'))}`;
  }

  override formatRoot(): string {
    return `${super.formatRoot()}\n\n${this.section('EXIT CODES', exitCodeLines().join('\n'))}`;
  }
}
