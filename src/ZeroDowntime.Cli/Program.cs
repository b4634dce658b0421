using ZeroDowntime.Cli;

return await Cli.MainAsync(args, Console.Out, Console.Error);
